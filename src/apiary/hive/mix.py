"""Which learners a run uses, with which settings, and where each one's next batch comes from.

`LEARNERS` maps each learner's name to its class and its config class; every learner is built the
same way (learners.common.Learner) and owns its optimizer, at its own config's learning rate.

- rl: the next tasks of the job's training stream (the RL learner plays and scores them: one reply
  each for a single-turn job, whole episodes for a game or tool task);
- rewards, corrections, critiques, preferences, self_distill: a queue of the worker's feedback of the
  kinds the learner consumes (`FEEDBACK_KINDS`: self_distill takes corrections and critiques) not yet
  learned from by any adapter version, `epochs` passes, each pass shuffled; the queue is saved in the
  run's checkpoint, so a resumed run continues it. Left out: feedback the store flagged as contradicting
  earlier feedback (`skip_conflicts`) and feedback of givers flagged as unreliable (`skip_flagged`,
  evals.givers), unless the learner's config says otherwise;
- practice: the worker's failed attempts at its job's tasks, oldest first, cycling;
- context_distill, recall: the next questions of a documents job's training stream (its practice questions,
  never its held-out ones; the two share one cursor); doc_pretrain and self_study: the job's next documents, cycling (jobs.documents);
- distil_back: no material; it is asked every step and runs one distillation phase toward the core
  after every `every`-th (learners.distil_back), so it needs a learner that learns the job beside it.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

import torch

from apiary.jobs.base import Job
from apiary.jobs.documents import documents_of
from apiary.learners.common import FeedbackConfig, FeedbackItem, Learner, LearnerConfig
from apiary.learners.corrections import CorrectionLearner, CorrectionsConfig
from apiary.learners.critiques import CritiqueLearner, CritiquesConfig
from apiary.learners.context_distill import ContextDistillConfig, ContextDistillLearner
from apiary.learners.distil_back import DistilBackConfig, DistilBackLearner
from apiary.learners.doc_pretrain import DocPretrainConfig, DocPretrainLearner
from apiary.learners.grpo import GRPOConfig, GRPOLearner
from apiary.learners.practice import PracticeConfig, PracticeLearner
from apiary.learners.preferences import PreferenceLearner, PreferencesConfig
from apiary.learners.recall import RecallConfig, RecallLearner
from apiary.learners.rewards import RewardLearner, RewardsConfig
from apiary.learners.self_distill import SelfDistillConfig, SelfDistillLearner
from apiary.learners.self_study import SelfStudyConfig, SelfStudyLearner
from apiary.models.core import Core
from apiary.store.store import Store

LEARNERS: dict[str, tuple[type, type]] = {
    "rl": (GRPOLearner, GRPOConfig),
    "rewards": (RewardLearner, RewardsConfig),
    "corrections": (CorrectionLearner, CorrectionsConfig),
    "critiques": (CritiqueLearner, CritiquesConfig),
    "preferences": (PreferenceLearner, PreferencesConfig),
    "practice": (PracticeLearner, PracticeConfig),
    "self_distill": (SelfDistillLearner, SelfDistillConfig),
    "distil_back": (DistilBackLearner, DistilBackConfig),
    "context_distill": (ContextDistillLearner, ContextDistillConfig),
    "doc_pretrain": (DocPretrainLearner, DocPretrainConfig),
    "self_study": (SelfStudyLearner, SelfStudyConfig),
    "recall": (RecallLearner, RecallConfig),
}
FEEDBACK_KINDS: dict[str, tuple[str, ...]] = {  # feedback learner -> the kinds of feedback it learns from
    "rewards": ("reward",), "corrections": ("correction",), "critiques": ("critique",), "preferences": ("preference",),
    "self_distill": ("correction", "critique"),
}
# learners that never run out of material: they need a step or time budget
OPEN_ENDED = {"rl", "practice", "context_distill", "doc_pretrain", "self_study", "recall"}
DOCUMENT_LEARNERS = {"context_distill", "doc_pretrain", "self_study", "recall"}
# A run learns, then distils back, unless told otherwise: rl with distil_back's phases kept nearly all of the core's
# answers (at lr 2e-4, 4 / 13 of 878 flipped on chain_sum in 20 steps, two seeds, both released; docs/benchmarks.md,
# the frontier; the 5-minute points at rl's lr 5e-4 are there too)
DEFAULT_LEARNERS = ("rl", "distil_back")


def with_distil_back(names: list[str]) -> list[str]:
    """The run's learners with distil_back's phases added, as `apiary learn` and the server's background runs learn
    by default; not to a documents run (what it learns is what the core did not know: not measured with the phases)."""
    if "distil_back" in names or set(names) <= DOCUMENT_LEARNERS:
        return list(names)
    return [*names, "distil_back"]


def check_learners(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in LEARNERS]
    if unknown or not names:
        raise ValueError(f"unknown learner(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(LEARNERS)}")
    if set(names) == {"distil_back"}:
        raise ValueError("distil_back only pulls a worker back toward its core; pair it with a learner that learns the "
                         "job, e.g. rl,distil_back")
    return list(dict.fromkeys(names))


def run_configs(names: list[str], configs: Mapping[str, LearnerConfig] | None = None) -> dict[str, LearnerConfig]:
    """Each learner's settings, in the order of `names`: the config given for it, else its defaults."""
    configs = dict(configs or {})
    check_learners([*names, *configs])
    unused = [n for n in configs if n not in names]
    if unused:
        raise ValueError(f"settings for learner(s) {', '.join(unused)}, which this run does not use ({', '.join(names)})")
    for name, config in configs.items():
        if not isinstance(config, LEARNERS[name][1]):
            raise ValueError(f"learner {name} takes a {LEARNERS[name][1].__name__}, not a {type(config).__name__}")
    return {name: configs.get(name) or LEARNERS[name][1]() for name in names}


def configs_with(names: list[str], rl: GRPOConfig, learning_rate: float | None = None,
                 learning_rates: Mapping[str, float] | None = None, batch_size: int | None = None,
                 epochs: int | None = None) -> dict[str, LearnerConfig]:
    """Each learner's settings from the command line's options: `learning_rate` for every learner unless
    `learning_rates` gives its own; `batch_size` for the feedback learners and practice, `epochs` for the
    feedback learners; the rest as `rl` says for rl and as the defaults say for the others."""
    rates = dict(learning_rates or {})
    check_learners([*names, *rates])
    unused = [n for n in rates if n not in names]
    if unused:
        raise ValueError(f"a learning rate for learner(s) {', '.join(unused)}, which this run does not use ({', '.join(names)})")
    configs = {}
    for name in names:
        config = rl if name == "rl" else LEARNERS[name][1]()
        if isinstance(config, (FeedbackConfig, PracticeConfig, ContextDistillConfig, DocPretrainConfig,
                                   SelfStudyConfig, RecallConfig)) and batch_size is not None:
            config = replace(config, batch_size=batch_size)
        if isinstance(config, FeedbackConfig) and epochs is not None:
            config = replace(config, epochs=epochs)
        rate = rates.get(name, learning_rate)
        configs[name] = config if rate is None else replace(config, learning_rate=rate)
    return configs


@dataclass
class Batches:
    """Position of every learner in its material; saved with each checkpoint."""

    cursor: int = 0  # rl: next index into the job's training stream
    practice: int = 0  # practice: next failed episode
    queues: dict[str, list[int]] = field(default_factory=dict)  # feedback learner -> feedback ids in order
    positions: dict[str, int] = field(default_factory=dict)
    distil_back: int = 0  # distil_back: the steps it was asked in
    doc_questions: int = 0  # context_distill, recall: next index into the documents job's training stream
    doc_texts: int = 0  # doc_pretrain: next document
    doc_study: int = 0  # self_study: next document

    def exhausted(self, names: list[str]) -> bool:
        """True when no learner has anything left (open-ended learners never run out)."""
        return not any(n in OPEN_ENDED or self.positions.get(n, 0) < len(self.queues.get(n, [])) for n in names)


def fill_queues(store: Store, worker: str, configs: Mapping[str, LearnerConfig], seed: int,
                held_back: Collection[str] = ()) -> Batches:
    """Queue every piece of not-yet-learned feedback for each feedback learner of the run, `epochs` passes;
    `held_back`: the givers whose feedback a learner with `skip_flagged` leaves out."""
    batches = Batches()
    for name, config in configs.items():
        if name in FEEDBACK_KINDS:
            ids = sorted(f.id for kind in FEEDBACK_KINDS[name] for f in store.feedback(worker, kind, unconsumed=True)
                         if not (config.skip_conflicts and f.conflict) and not (config.skip_flagged and f.by in held_back))
            order: list[int] = []
            for epoch in range(config.epochs):
                shuffled = list(ids)
                random.Random(seed * 1000 + epoch).shuffle(shuffled)
                order += shuffled
            batches.queues[name], batches.positions[name] = order, 0
    return batches


def next_batch(name: str, config: LearnerConfig, store: Store, job: Job, worker: str, batches: Batches):
    """The next batch for learner `name` (with its settings `config`), or None when it has nothing left this run."""
    if name == "rl":
        tasks = job.source.train(batches.cursor, config.prompts_per_step)
        batches.cursor += len(tasks)
        return tasks
    if name == "distil_back":
        batches.distil_back += 1
        return [batches.distil_back // config.every] if batches.distil_back % config.every == 0 else None
    if name in ("context_distill", "recall"):
        tasks = job.source.train(batches.doc_questions, config.batch_size)
        batches.doc_questions += len(tasks)
        return tasks
    if name == "doc_pretrain":
        batches.doc_texts += config.batch_size
        return _documents(job, name, batches.doc_texts - config.batch_size, config.batch_size)
    if name == "self_study":
        batches.doc_study += config.batch_size
        return _documents(job, name, batches.doc_study - config.batch_size, config.batch_size)
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


def _documents(job: Job, learner: str, start: int, count: int) -> list:
    """`count` documents of the documents job from position `start`, cycling through the folder."""
    documents = documents_of(job, learner).all_documents()
    return [documents[(start + i) % len(documents)] for i in range(count)]


def _feedback_items(store: Store, ids: list[int]) -> list[FeedbackItem]:
    feedback = store.feedback_by_id(ids)
    episodes = store.episodes_by_id([f.episode_id for f in feedback.values()]
                                    + [f.other_episode_id for f in feedback.values() if f.other_episode_id])
    return [FeedbackItem(feedback[i], episodes[feedback[i].episode_id], episodes.get(feedback[i].other_episode_id))
            for i in ids if i in feedback]


def build_learners(configs: Mapping[str, LearnerConfig], model, core: Core, job: Job,
                   generator: torch.Generator) -> list[tuple[str, Learner]]:
    """The learners of a run, sharing one adapter and one random generator, each with its own optimizer."""
    return [(name, LEARNERS[name][0](model, core.tokenizer, job, config, core.stop_token_ids, generator))
            for name, config in configs.items()]
