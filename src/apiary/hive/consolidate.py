"""Consolidation: the workers on the current core become one candidate core, released only past the gate.

1. Sources: every worker whose adapters sit on the current core, at its live adapter version (the
   one that is served; a rolled-back version is not consolidated).
2. Candidate: a core adapter over the current core, by on-policy distillation (`distill`, see
   hive/distill.py), the same distillation into every weight of the core at a small learning rate
   (`full`: stored as a weight delta, models/delta.py), or by merging the workers' adapters (`linear`, `ties`, `dare_linear`, see
   models/merge.py; each worker's update weighted by `merge_weight`, 1 = task arithmetic).
3. Evidence: held-out score on every job of the hive for the released core, each worker and the
   candidate; the share of each worker's gain the candidate kept; retention KL to the base and
   right-to-wrong flips on the retention items; held-out items in the training text.
4. The gate decides; the core version (adapter, lineage: sources, episodes, method, eval ids)
   and the decision (with its numbers) are stored either way; a candidate that passed is
   released and becomes the core that new workers start from.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

from pydantic import BaseModel

from apiary.evals.candidate import evidence, find_contamination, measure_retention
from apiary.evals.gate import GateConfig, decide
from apiary.hive.cores import Cores
from apiary.hive.distill import DistillConfig, Teacher, distill
from apiary.hive.evaluator import Evaluator
from apiary.hive.worker import WorkerHandle
from apiary.jobs.base import Job
from apiary.learners.anchor import anchor_prompts
from apiary.models import adapters, delta
from apiary.models.core import cache_dir
from apiary.models.generate import prompt_ids
from apiary.models.merge import MERGED, METHODS, merge
from apiary.store.artifacts import write_dir
from apiary.store.records import CoreVersion, EvalResult, GateDecision, Worker
from apiary.store.store import Store

CONSOLIDATION_METHODS = ("distill", "full", *METHODS)
FULL_LEARNING_RATE = 1e-5  # full fine-tuning's usual rate; the naive peer's too (bench/naive_full.py)


@dataclass
class ConsolidateConfig:
    method: str = "distill"
    distill: DistillConfig = field(default_factory=DistillConfig)
    full_learning_rate: float = FULL_LEARNING_RATE  # `full`: distillation into every weight at this rate
    merge_weight: float = 1.0  # each worker's update is added with this weight (merges)
    density: float = 0.5  # ties / dare_linear: share of each update's entries kept
    gate: GateConfig = field(default_factory=GateConfig)
    release: bool = True  # release the candidate if it passes the gate


class JobScores(BaseModel):
    job: str
    worker: str | None  # the source worker of this job (None: a job of a worker already consolidated)
    released: float  # the current (released) core
    worker_score: float | None
    candidate: float
    gain_kept: float | None  # (candidate - released) / (worker - released), when the worker gained


class ConsolidateResult(BaseModel):
    version: int
    parent: int
    method: str
    sources: list[dict]
    jobs: list[JobScores]
    retention_kl: float
    flips: dict
    contamination: int
    passed: bool
    reasons: list[str]
    released: bool
    current_core: int
    seconds: float
    flip_test: dict | None = None  # the gate's flip test: noise floor, flips allowed, p-values (evals.gate.FlipTest)
    gate: dict = {}  # the gate's bounds (evals.gate.GateConfig)


def consolidate(store: Store, cores: Cores, evaluator: Evaluator, workers: list[WorkerHandle], jobs: dict[str, Job],
                config: ConsolidateConfig = ConsolidateConfig(), show_progress: bool = True) -> ConsolidateResult:
    """Build, measure, gate, store and (if it passed) release a new core version from `workers` (the
    sources, each at its live version); `jobs`: worker name -> job for every worker of the hive whose
    job is known, the candidate is scored on each. See the module doc."""
    if config.method not in CONSOLIDATION_METHODS:
        raise ValueError(f"unknown method {config.method!r}; choose from {', '.join(CONSOLIDATION_METHODS)}")
    started, parent, core = time.perf_counter(), store.current_core(), cores.current
    sources = [_source(store, w) for w in workers]
    version = store.next_core_version()
    references = _references(evaluator, core, {w.name: w for w in workers}, jobs)
    model, save, details = _build(store, core, sources, jobs, config, show_progress)
    try:
        write_dir(store.core_dir(version), save)
        store.publish(store.core_dir(version))  # before its row: any node that reads the row can fetch it
        scores, eval_ids = _job_scores(evaluator, model, core, version, references)
        kept = measure_retention(model, cores.at(0), cache_dir(), adapter_over_base=parent == 0 and config.method != "full")
    finally:
        if config.method != "full":
            adapters.detach(model)  # the copy trained in every weight is simply dropped
    distinct = {(j.name, tuple(t.id for t in j.source.heldout())): j for j in jobs.values()}
    found = find_contamination(training_texts(store, [(s["worker"], s["adapter_version"]) for s in sources],
                                              config.method in ("distill", "full")), list(distinct.values()))
    decision = decide(evidence({s.job: s.candidate for s in scores}, {s.job: s.released for s in scores}, kept, found),
                      config.gate)
    details |= {"prompt_format": core.prompt_format.name, "eval_ids": eval_ids, "retention_kl": kept.kl, "flips": kept.flips,
                "contamination": found.examples,
                "jobs": [s.model_dump() for s in scores], "config": {k: v for k, v in asdict(config).items() if k != "gate"}}
    store.add_core_version(CoreVersion(version=version, parent=parent, method=config.method, path=str(store.core_dir(version)),
                                       sources=sources, details=details))
    store.add_decision(GateDecision(candidate=f"core:{version}", passed=decision.passed, reasons=decision.reasons,
                                    evidence=decision.evidence, config=decision.config))
    if decision.passed and config.release:
        store.release(version)
    return ConsolidateResult(version=version, parent=parent, method=config.method, sources=sources, jobs=scores,
                             retention_kl=kept.kl, flips=kept.flips, contamination=len(found.hits), passed=decision.passed,
                             reasons=decision.reasons, released=decision.passed and config.release,
                             current_core=store.current_core(), seconds=time.perf_counter() - started,
                             flip_test=decision.evidence["flip_test"], gate=decision.config)


def choose_sources(workers: list[Worker], parent: int, names: list[str] | None) -> list[Worker]:
    """The workers to consolidate: those named (each must sit on core `parent`), or every worker on core
    `parent`; only those whose live version has learned something (an adapter version above 0)."""
    by_name = {w.name: w for w in workers}
    for name in names or []:
        if name not in by_name:
            raise ValueError(f"no worker named {name!r}")
        if by_name[name].core_version != parent:
            raise ValueError(f"worker {name!r} sits on core version {by_name[name].core_version}, not the current {parent}")
    chosen = [by_name[n] for n in (names or sorted(by_name))]
    chosen = [w for w in chosen if w.core_version == parent and w.live_version]
    if not chosen:
        raise ValueError(f"nothing to consolidate: no worker on core version {parent} has a live adapter version yet")
    return chosen


def _source(store: Store, worker: WorkerHandle) -> dict:
    """A source as stored in the core version's lineage: the worker, its job and live version, what it learned from."""
    version = worker.live_version
    return {"worker": worker.name, "job": worker.job.name, "adapter_version": version,
            "episodes": len(store.trained_on(worker.name, version)),
            "feedback": len(store.feedback_learned(worker.name, version))}


def _build(store, core, sources: list[dict], jobs: dict[str, Job], config: ConsolidateConfig, show_progress: bool):
    """(candidate model, how to write it into a staging dir, details)."""
    paths = [store.fetched(store.adapter_dir(s["worker"], s["adapter_version"])) for s in sources]
    if config.method not in ("distill", "full"):
        model = merge(core.model, paths, [config.merge_weight] * len(paths), config.method, config.density)
        return (model, lambda staging: adapters.save(model, staging, MERGED),
                {"merge_weight": config.merge_weight, "density": config.density})
    teachers = [Teacher(name=f"worker_{i}", adapter=path, prompts=_job_prompts(store, core.tokenizer, s),
                        max_new_tokens=min(config.distill.max_new_tokens, jobs[s["worker"]].max_tokens),
                        batch=config.distill.prompts_per_job)
                for i, (s, path) in enumerate(zip(sources, paths))]
    anchors = [prompt_ids(core.tokenizer, [{"role": "user", "content": p}]) for p in anchor_prompts()]
    teachers.append(Teacher(name="previous_core", adapter=None, prompts=anchors, weight=config.distill.anchor_weight,
                            max_new_tokens=config.distill.anchor_new_tokens, batch=config.distill.anchor_prompts))
    if config.method == "distill":
        model, details = distill(core.model, core.tokenizer, core.stop_token_ids, teachers, config.distill, show_progress)
        return model, lambda staging: adapters.save(model, staging), details
    settings = replace(config.distill, learning_rate=config.full_learning_rate)
    model, details = distill(core.model, core.tokenizer, core.stop_token_ids, teachers, settings, show_progress, full=True)
    change = delta.delta_of(model, core.model)
    delta.round_to_stored(model, core.model, change)  # measured as it is stored
    return model, lambda staging: delta.save(change, staging), details


def _job_prompts(store, tokenizer, source: dict) -> list[list[int]]:
    """The distinct prompts the worker learned from (its episodes and those its feedback was about), as token ids."""
    episodes, _ = _learned(store, source["worker"], source["adapter_version"])
    distinct = {e.task_id: e.messages for e in episodes}
    if not distinct:
        raise ValueError(f"worker {source['worker']!r} has no training episodes to distill from")
    return [prompt_ids(tokenizer, messages) for messages in distinct.values()]


def _learned(store, worker: str, version: int) -> tuple[list, list]:
    """(episodes, feedback) the worker's adapter version learned from: its own episodes, and those feedback was about."""
    own = store.episodes_by_id(store.trained_on(worker, version))
    feedback = list(store.feedback_by_id(store.feedback_learned(worker, version)).values())
    about = store.episodes_by_id(sorted({f.episode_id for f in feedback} - set(own)))
    return list(own.values()) + list(about.values()), feedback


def _splits(sources: dict[str, WorkerHandle], jobs: dict[str, Job]) -> dict[str, tuple[Job, str | None]]:
    """Each held-out split once (a job is its name and held-out items; two different jobs with one name are
    told apart as `name@worker`), with its source worker (a source worker on that job, or None)."""
    splits: dict[tuple, tuple[Job, str, str | None]] = {}  # (name, held-out ids) -> (job, a worker, its source worker)
    for worker, job in jobs.items():
        key = (job.name, tuple(t.id for t in job.source.heldout()))
        _, first, source = splits.get(key, (job, worker, None))
        splits[key] = (job, first, source or (worker if worker in sources else None))
    names = [name for name, _ in splits]
    return {(name if names.count(name) == 1 else f"{name}@{first}"): (job, source)
            for (name, _), (job, first, source) in splits.items()}


@dataclass(frozen=True)
class _Reference:
    """What a candidate is compared with on one split: the released core, and the split's source worker."""
    job: Job
    worker: str | None
    released: EvalResult
    worker_eval: EvalResult | None


def _references(evaluator: Evaluator, core, sources: dict[str, WorkerHandle], jobs: dict[str, Job]) -> dict[str, _Reference]:
    """Per split: the released core's eval and its source worker's (at its live version), measured before the
    candidate is built: a worker's adapter is attached to the core's modules and unloaded after, which would
    strip a candidate adapter that sits on those same modules."""
    return {name: _Reference(job, worker, evaluator.core(job, core.version),
                             evaluator.worker(sources[worker], job=job) if worker else None)
            for name, (job, worker) in sorted(_splits(sources, jobs).items())}


def _job_scores(evaluator: Evaluator, model, core, version: int, references: dict[str, _Reference]):
    """Scores per split: the released core and the source worker (`references`), and the candidate."""
    scores, eval_ids = [], {}
    for name, ref in references.items():
        job, worker, released, worker_eval = ref.job, ref.worker, ref.released, ref.worker_eval
        mine = evaluator.model(model, core, job, core_version=version)
        gain = None
        if worker_eval is not None and worker_eval.score > released.score:
            gain = (mine.score - released.score) / (worker_eval.score - released.score)
        scores.append(JobScores(job=name, worker=worker, released=released.score, candidate=mine.score, gain_kept=gain,
                                worker_score=worker_eval.score if worker_eval else None))
        eval_ids[name] = {"released": released.id, "candidate": mine.id, "worker": worker_eval.id if worker_eval else None}
    return scores, eval_ids


def training_texts(store, versions: list[tuple[str, int]], with_anchors: bool = False) -> list[str]:
    """Every prompt (and feedback text) the (worker, adapter version)s learned from, plus (`with_anchors`)
    the anchor prompts distillation uses."""
    texts = []
    for worker, version in versions:
        episodes, feedback = _learned(store, worker, version)
        texts += list({e.task_id: e.messages[-1]["content"] for e in episodes}.values())
        texts += [f.text for f in feedback if f.text]
    return texts + (anchor_prompts() if with_anchors else [])
