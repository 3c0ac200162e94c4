"""Multi-turn jobs: an environment answers each of the worker's turns until the episode ends.

The job protocol stays the same (tasks, a held-out split, `Job.messages`); a multi-turn job adds
`Job.environment`, which makes one fresh `Environment` per episode from its task (a game seed, a
question). `Environment` and `Turn` live in jobs.base, beside the job protocol they belong to. The environment writes the first user message, reads each reply of the worker and
answers with the next message, and says when the episode is over and what it scored:

    env = job.environment(task)
    message = env.start()
    while True:
        turn = env.step(reply_of_the_worker(message))
        if turn.done: break          # turn.score in [0, 1], turn.success
        message = turn.message

An invalid move (a reply the environment cannot read or a rule it breaks) is answered like any
other turn, with `invalid=True` and a message saying what was wrong; it is never an exception.
An episode that runs past `Job.max_turns` is cut off with the score of its last turn (what the
environment said it would score if it ended there). `success` is what held-out evals count;
`score` is the training reward, which may also give partial credit (see VALID_WEIGHT).
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass

from apiary.jobs.base import Task
from apiary.jobs.scoring import Scorer

HELDOUT_SEED_BASE = 1_000_000  # held-out episodes use seeds from here on; training seeds stay below it
# Part of a failed episode's score: the fraction of the worker's turns that were valid moves / well-formed
# calls. A 135M core starts out with nearly every move invalid and almost never wins, so without this
# credit most groups of episodes score all the same and carry no learning signal. A win always scores 1.
VALID_WEIGHT = 0.2


def valid_credit(turns: int, invalid: int) -> float:
    return VALID_WEIGHT * (turns - invalid) / turns if turns else 0.0


@dataclass
class SeededSource:
    """Tasks that are seeds of an environment: held-out seeds HELDOUT_SEED_BASE + i, training seeds
    0, 1, 2, ... (the two never meet). `name` goes into each task's question, so task ids differ by job."""

    name: str
    heldout_size: int = 50

    def heldout(self) -> list[Task]:
        return [self._task(HELDOUT_SEED_BASE + i) for i in range(self.heldout_size)]

    def train(self, start: int, count: int) -> list[Task]:
        return [self._task(i % HELDOUT_SEED_BASE) for i in range(start, start + count)]

    def _task(self, seed: int) -> Task:
        return Task(question=f"{self.name} seed {seed}", answer="", metadata={"seed": seed})

    def describe(self) -> dict:
        return {"kind": "seeded", "name": self.name, "heldout": self.heldout_size}


def _played_by_environment(completion: str, answer: str) -> float:
    raise ValueError("a multi-turn job is scored by its environment over a whole episode, not one reply at a time")


ENVIRONMENT_SCORER = Scorer("environment", _played_by_environment)


@contextmanager
def own_random(state: list):
    """Run code that uses Python's process-global `random` (TextArena does) on a private stream.

    `state` is a one-item list holding the stream's state (None: not seeded yet); the global
    stream is restored afterwards, so episodes played side by side, or one after another, are
    each reproducible from their own seed and leave everyone else's random numbers alone."""
    saved = random.getstate()
    try:
        if state[0] is not None:
            random.setstate(state[0])
        yield
        state[0] = random.getstate()
    finally:
        random.setstate(saved)
