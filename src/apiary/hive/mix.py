"""Which learners a run uses, and where each one's next batch comes from.

- rl: the next tasks of the job's training stream (the RL learner samples and scores them; for a
  multi-turn job it plays whole episodes, learners.grpo_turns);
- rewards, corrections, critiques, preferences: a queue of the worker's feedback of that kind
  not yet learned from by any adapter version, `epochs` passes, each pass shuffled; the queue is
  saved in the run's checkpoint, so a resumed run continues it;
- practice: the worker's failed attempts at its job's tasks, oldest first, cycling.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from apiary.jobs.base import Job
from apiary.learners.common import FeedbackConfig, FeedbackItem
from apiary.learners.corrections import CorrectionLearner
from apiary.learners.critiques import CritiqueLearner
from apiary.learners.grpo import GRPOConfig, GRPOLearner
from apiary.learners.grpo_turns import MultiTurnGRPOLearner
from apiary.learners.practice import PracticeLearner
from apiary.learners.preferences import PreferenceLearner
from apiary.learners.rewards import RewardLearner
from apiary.models.core import Core
from apiary.store.store import Store

FEEDBACK_KINDS = {"rewards": "reward", "corrections": "correction", "critiques": "critique", "preferences": "preference"}
LEARNERS = ("rl", *FEEDBACK_KINDS, "practice")
OPEN_ENDED = {"rl", "practice"}  # learners that never run out of material: they need a step or time budget
SINGLE_TURN_ONLY = {"critiques", "practice"}  # they sample one reply to a question, so not a whole game


def check_learners(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in LEARNERS]
    if unknown or not names:
        raise ValueError(f"unknown learner(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(LEARNERS)}")
    return list(dict.fromkeys(names))


@dataclass
class Batches:
    """Position of every learner in its material; saved with each checkpoint."""

    cursor: int = 0  # rl: next index into the job's training stream
    practice: int = 0  # practice: next failed episode
    queues: dict[str, list[int]] = field(default_factory=dict)  # feedback learner -> feedback ids in order
    positions: dict[str, int] = field(default_factory=dict)

    def exhausted(self, names: list[str]) -> bool:
        """True when no learner has anything left (open-ended learners never run out)."""
        return not any(n in OPEN_ENDED or self.positions.get(n, 0) < len(self.queues.get(n, [])) for n in names)


def fill_queues(store: Store, worker: str, names: list[str], config: FeedbackConfig, seed: int) -> Batches:
    """Queue every piece of not-yet-learned feedback for each feedback learner in `names`."""
    batches = Batches()
    for name in names:
        if name in FEEDBACK_KINDS:
            ids = [f.id for f in store.feedback(worker, FEEDBACK_KINDS[name], unconsumed=True)
                   if not (config.skip_conflicts and f.conflict)]
            order: list[int] = []
            for epoch in range(config.epochs):
                shuffled = list(ids)
                random.Random(seed * 1000 + epoch).shuffle(shuffled)
                order += shuffled
            batches.queues[name], batches.positions[name] = order, 0
    return batches


def next_batch(name: str, store: Store, job: Job, worker: str, batches: Batches, grpo: GRPOConfig, config: FeedbackConfig):
    """The next batch for learner `name`, or None when it has nothing left this run."""
    if name == "rl":
        tasks = job.source.train(batches.cursor, grpo.prompts_per_step)
        batches.cursor += len(tasks)
        return tasks
    if name == "practice":
        failures = store.failed_episodes(worker, batches.practice, config.batch_size)
        if not failures and batches.practice:
            batches.practice = 0
            failures = store.failed_episodes(worker, 0, config.batch_size)
        batches.practice += len(failures)
        return failures or None
    queue, start = batches.queues[name], batches.positions[name]
    ids = queue[start:start + config.batch_size]
    batches.positions[name] = start + len(ids)
    return _feedback_items(store, ids) if ids else None


def _feedback_items(store: Store, ids: list[int]) -> list[FeedbackItem]:
    feedback = store.feedback_by_id(ids)
    episodes = store.episodes_by_id([f.episode_id for f in feedback.values()]
                                    + [f.other_episode_id for f in feedback.values() if f.other_episode_id])
    return [FeedbackItem(feedback[i], episodes[feedback[i].episode_id], episodes.get(feedback[i].other_episode_id))
            for i in ids if i in feedback]


def build_learners(names: list[str], model, core: Core, job: Job, grpo: GRPOConfig, config: FeedbackConfig,
                   optimizer: torch.optim.Optimizer, generator: torch.Generator) -> list[tuple[str, object]]:
    """The learners of a run, sharing one adapter, one optimizer and one random generator."""
    tok, stop = core.tokenizer, core.stop_token_ids
    single_turn_only = sorted(SINGLE_TURN_ONLY & set(names)) if job.multi_turn else []
    if single_turn_only:
        raise ValueError(f"learner(s) {', '.join(single_turn_only)} write single replies and cannot learn the multi-turn "
                         f"job {job.name}; use rl (or feedback on its stored episodes)")
    rl = MultiTurnGRPOLearner if job.multi_turn else GRPOLearner
    made = {
        "rl": lambda: rl(model, tok, job, grpo, stop, optimizer=optimizer, generator=generator),
        "rewards": lambda: RewardLearner(model, tok, optimizer, config),
        "corrections": lambda: CorrectionLearner(model, tok, optimizer, config),
        "critiques": lambda: CritiqueLearner(model, tok, job, optimizer, config, stop, generator),
        "preferences": lambda: PreferenceLearner(model, tok, optimizer, config),
        "practice": lambda: PracticeLearner(model, tok, job, optimizer, config, stop, generator),
    }
    return [(name, made[name]()) for name in names]
