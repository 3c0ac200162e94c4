"""reasoning-gym tasks as a job source, with a held-out split disjoint from training.

Held-out items are the first `heldout_size` *distinct* questions drawn from a fixed seed; the
train stream draws from another seed and skips every held-out question. For small task spaces
(chain_sum with 2 one-digit terms has exactly 200 distinct problems) the held-out split is
capped so that training keeps at least half of the space.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import reasoning_gym
from reasoning_gym.factory import DATASETS

from apiary.jobs.base import Task, did_you_mean

HELDOUT_SEED = 1_000_003
TRAIN_SEED = 17
PROBE = 4096  # items drawn to measure the size of the task space


class UnknownTaskError(ValueError):
    pass


def check_task_name(task: str) -> None:
    if task not in DATASETS:
        raise UnknownTaskError(f"unknown reasoning-gym task {task!r}{did_you_mean(task, DATASETS)}")


@dataclass
class ReasoningGymSource:
    task: str
    config: dict = field(default_factory=dict)
    heldout_size: int = 200

    def __post_init__(self) -> None:
        check_task_name(self.task)
        try:
            probe = self._dataset(HELDOUT_SEED, PROBE)
        except (TypeError, AssertionError, ValueError) as err:
            raise ValueError(f"bad config for reasoning-gym task {self.task!r}: {err}") from err
        distinct: dict[str, Task] = {}
        for item in probe:
            distinct.setdefault(item["question"], _task(item))
        cap = max(1, min(self.heldout_size, len(distinct) // 2))
        self._heldout = list(distinct.values())[:cap]
        self._heldout_questions = {t.question for t in self._heldout}
        self._train = self._dataset(TRAIN_SEED, 10_000_000)

    def _dataset(self, seed: int, size: int):
        return reasoning_gym.create_dataset(self.task, seed=seed, size=size, **self.config)

    def heldout(self) -> list[Task]:
        return list(self._heldout)

    def train(self, start: int, count: int) -> list[Task]:
        tasks, index = [], start
        while len(tasks) < count:
            item = self._train[index % len(self._train)]
            index += 1
            if item["question"] not in self._heldout_questions:
                tasks.append(_task(item))
        return tasks

    def describe(self) -> dict:
        return {"kind": "reasoning_gym", "task": self.task, "config": self.config, "heldout": len(self._heldout)}


def _task(item: dict) -> Task:
    return Task(question=item["question"], answer=str(item["answer"]), metadata=item.get("metadata", {}))
