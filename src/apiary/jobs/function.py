"""A job from plain Python: a function that makes the i-th task.

`make(index) -> (question, answer)` must be deterministic in `index`. Held-out tasks are the
first distinct questions from indices [HELDOUT_BASE, ...), at most half of the distinct questions
seen there, so a small task space keeps the other half for training; training uses indices from 0
and skips any held-out question. A scoring function is given to the `Job` as a `Scorer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from apiary.jobs.base import Task

HELDOUT_BASE = 10_000_000


@dataclass
class FunctionSource:
    make: Callable[[int], tuple[str, str]]
    heldout_size: int = 100
    max_tries: int = 20_000

    def __post_init__(self) -> None:
        seen: dict[str, Task] = {}
        for i in range(self.max_tries):
            question, answer = self.make(HELDOUT_BASE + i)
            seen.setdefault(question, Task(question, str(answer)))
            if len(seen) >= 2 * self.heldout_size:
                break
        held = dict(list(seen.items())[: max(1, min(self.heldout_size, len(seen) // 2))])
        self._heldout = list(held.values())
        self._questions = set(held)

    def heldout(self) -> list[Task]:
        return list(self._heldout)

    def train(self, start: int, count: int) -> list[Task]:
        tasks, index = [], start
        while len(tasks) < count and index < start + self.max_tries + count:
            question, answer = self.make(index)
            index += 1
            if question not in self._questions:
                tasks.append(Task(question, str(answer)))
        if len(tasks) < count:
            raise ValueError("function job: every generated task is in the held-out split")
        return tasks

    def describe(self) -> dict:
        return {"kind": "python", "function": getattr(self.make, "__qualname__", repr(self.make)), "heldout": len(self._heldout)}
