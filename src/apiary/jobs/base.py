"""The one job protocol.

A job is a source of tasks (a train stream and a disjoint held-out split), a way to ask
(`messages`), and a way to score an answer (`score`, a number in [0, 1]). Single-turn jobs
are exactly this; multi-turn jobs will add an environment step on top of the same record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Protocol

from apiary.jobs.scoring import Scorer


@dataclass(frozen=True)
class Task:
    """One thing to do: a question, its reference answer, and an id stable across runs."""

    question: str
    answer: str
    metadata: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        return hashlib.sha1(f"{self.question}\x00{self.answer}".encode()).hexdigest()[:16]


class TaskSource(Protocol):
    """Where a job's tasks come from. `heldout()` and `train(...)` never share a question."""

    def heldout(self) -> list[Task]: ...

    def train(self, start: int, count: int) -> list[Task]: ...

    def describe(self) -> dict: ...


@dataclass
class Job:
    """A named job: tasks + prompt format + answer extraction and scorer."""

    name: str
    source: TaskSource
    scorer: Scorer
    instruction: str = ""
    system: str | None = None
    max_tokens: int = 32
    origin: dict | None = None  # how to rebuild this job later, e.g. {"spec": "rg:chain_sum", "overrides": [...]}
    solve: Callable[[str], str | None] | None = None  # reference answer of a new question, if the job can compute it
    heldout_scorer: Scorer | None = None  # held-out evals use it instead of `scorer` (a check on reward hacking)

    def messages(self, task: Task) -> list[dict]:
        content = f"{task.question} {self.instruction}".strip() if self.instruction else task.question
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + [{"role": "user", "content": content}]

    def score(self, task: Task, completion: str) -> float:
        """The training reward of an answer."""
        return self._checked(self.scorer(completion, task.answer))

    def heldout_score(self, task: Task, completion: str) -> float:
        """The held-out score of an answer: `heldout_scorer` if the job has one, else the training reward."""
        return self._checked((self.heldout_scorer or self.scorer)(completion, task.answer))

    def _checked(self, value) -> float:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"job {self.name}: scorer returned {value}, outside [0, 1]")
        return value

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": self.source.describe(),
            "scorer": self.scorer.name,
            "heldout_scorer": self.heldout_scorer.name if self.heldout_scorer else None,
            "instruction": self.instruction,
            "max_tokens": self.max_tokens,
            "origin": self.origin,
            "solve": getattr(self.solve, "__name__", None),
        }


def split_distinct(items: list[Task], heldout_size: int, salt: str) -> tuple[list[Task], list[Task]]:
    """Split a finite list into (train, heldout) by a stable hash of the question text.

    Duplicated questions all land on the same side, so the two splits never overlap.
    """
    questions = sorted({t.question for t in items}, key=lambda q: hashlib.sha1(f"{salt}:{q}".encode()).hexdigest())
    held = set(questions[:heldout_size])
    return [t for t in items if t.question not in held], [t for t in items if t.question in held]
