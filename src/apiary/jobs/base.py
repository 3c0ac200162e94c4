"""The one job protocol.

A job is a source of tasks (a train stream and a disjoint held-out split), a way to ask
(`messages`), and a way to score an answer (`score`, a number in [0, 1]). Single-turn jobs
are exactly this. A multi-turn job (a game, a tool-using task) also has an `environment`: for
each task it makes an `Environment` that writes the first message, answers each of the worker's
turns, and says when the episode is over and what it scored (see jobs.multiturn).

Every episode is played the same way (learners.play): `Job.episode(task)` is the job's own
environment, or, for a single-turn job, `OneReply`, an environment that ends after one reply and
scores it with the job's scorer. A single-turn task is a one-turn episode.
"""

from __future__ import annotations

import difflib
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


@dataclass
class Turn:
    """The environment's answer to one reply of the worker."""

    message: str  # what the worker reads next ("" when the episode is over)
    done: bool = False
    invalid: bool = False  # the reply was an invalid move or a malformed tool call
    score: float = 0.0  # the episode's score in [0, 1] if it ended here (when done: its final score)
    success: bool = False  # when done: the goal was reached
    # when done: the held-out score of the episode, if not simply 1.0 for success and 0.0 otherwise
    # (a game's held-out score is whether it was won; a single reply's is the job's held-out scorer)
    heldout_score: float | None = None


class Environment(Protocol):
    def start(self) -> str: ...

    def step(self, reply: str) -> Turn: ...


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
    environment: Callable[[Task], Environment] | None = None  # multi-turn jobs: a fresh environment per episode
    max_turns: int = 1  # multi-turn jobs: the worker's turns before an episode is cut off
    examples: list[dict] = field(default_factory=list)  # few-shot turns shown before the first user message
    eval_temperature: float = 0.0  # held-out sampling temperature (multi-turn: > 0 plays with a fixed seed)

    @property
    def multi_turn(self) -> bool:
        return self.environment is not None

    def episode(self, task: Task) -> Environment:
        """A fresh environment for one episode of `task`: the job's own, or one reply scored by the job's scorer."""
        return self.environment(task) if self.environment is not None else OneReply(self, task)

    def messages(self, task: Task) -> list[dict]:
        """The opening messages of an episode (a multi-turn job's environment writes the first one)."""
        return self.opening(self.environment(task).start() if self.environment is not None else task.question)

    def opening(self, first: str) -> list[dict]:
        """The system message (if any), the job's example turns, and the first user message: `first`
        followed by the job's instruction."""
        content = f"{first}{self._separator}{self.instruction}".strip() if self.instruction else first
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + list(self.examples) + [{"role": "user", "content": content}]

    @property
    def _separator(self) -> str:
        return "\n\n" if self.multi_turn else " "

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
            "max_turns": self.max_turns,
        }


@dataclass
class OneReply:
    """A single-turn job as an environment: the task's question, one reply, scored, done. `success`
    is full marks from the training scorer; the held-out score is the job's held-out scorer."""

    job: Job
    task: Task

    def start(self) -> str:
        return self.task.question

    def step(self, reply: str) -> Turn:
        score = self.job.score(self.task, reply)
        heldout = score if self.job.heldout_scorer is None else self.job.heldout_score(self.task, reply)
        return Turn(message="", done=True, score=score, success=score >= 1.0, heldout_score=heldout)


def split_distinct(items: list[Task], heldout_size: int, salt: str) -> tuple[list[Task], list[Task]]:
    """Split a finite list into (train, heldout) by a stable hash of the question text.

    Duplicated questions all land on the same side, so the two splits never overlap.
    """
    questions = sorted({t.question for t in items}, key=lambda q: hashlib.sha1(f"{salt}:{q}".encode()).hexdigest())
    held = set(questions[:heldout_size])
    return [t for t in items if t.question not in held], [t for t in items if t.question in held]


def did_you_mean(name: str, choices, n: int = 5, cutoff: float = 0.5) -> str:
    """"; did you mean a, b?" for the choices close to a mistyped name ("" if none is)."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=cutoff)
    return f"; did you mean {', '.join(close)}?" if close else ""
