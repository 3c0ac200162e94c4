"""Three jobs, learnt four ways in one run: the hive (workers in parallel, then consolidation by
distillation) against merges of the same workers, naive sequential fine-tuning of one LoRA adapter,
and naive sequential full fine-tuning. Same core, same jobs, same learning budget per job.

1. Workers: the core becomes three workers, each learning its job for the budget with the demo's
   learners (rl, then distil back toward the core), all starting from the same core. Each worker is also scored on the other jobs.
2. Consolidation: each method (distillation into a core adapter or into every weight; linear, TIES
   and DARE merges via PEFT) builds a
   candidate core from the three workers; each is measured and gated, none is released (so all
   start from the same core and the same workers).
3. Naive sequential LoRA: one adapter learns job 1, then job 2, then job 3, one budget each, by plain
   GRPO (the workers' rl settings, without distil_back or rl's anchor toward the core); after
   each stage it is scored on every job (the forgetting matrix R, with ACC/BWT/FWT as in GEM).
4. Naive sequential full fine-tuning: the same, training every weight (bench.naive_full).
5. Retention (KL to the base on the retention prompts; right-to-wrong flips on the retention items)
   for every worker, every candidate, and both sequential models after their last stage.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from apiary.evals.candidate import measure_retention
from apiary.evals.forgetting import transfer
from apiary.hive.consolidate import ConsolidateConfig
from apiary.hive.distill import DistillConfig
from apiary.hive.hive import Hive
from apiary.hive.recipes import CONTINUAL, WorkerPlan
from apiary.hive.training import Budget
from apiary.learners.common import LearnerConfig
from apiary.learners.distil_back import DistilBackConfig
from apiary.learners.grpo import GRPOConfig
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.core import cache_dir
from apiary.store.records import AdapterVersion

from apiary.bench.naive_full import sequential_full

METHODS = ["distill", "full", "linear", "ties", "dare_linear"]
NAIVE = ["lora", "full"]  # naive sequential LoRA, naive sequential full fine-tuning


@dataclass
class ContinualSetup:
    minutes: float | None = CONTINUAL.minutes  # RL budget per job (per worker, per sequential stage)
    steps: int | None = None  # or a step budget (the quick form)
    distill_steps: int = 40
    config: GRPOConfig = field(default_factory=lambda: CONTINUAL.rl)
    distil_back: DistilBackConfig | None = field(default_factory=lambda: CONTINUAL.distil_back)  # the workers' (not the naive peers')
    jobs: list[WorkerPlan] = field(default_factory=lambda: list(CONTINUAL.workers))
    methods: list[str] = field(default_factory=lambda: list(METHODS))  # consolidation methods to compare
    naive: list[str] = field(default_factory=lambda: list(NAIVE))  # the naive sequential peers to run
    seed: int = 0  # the workers', the distillation's and the naive peers' sampling seed

    def __post_init__(self):
        unknown = set(self.methods) - set(METHODS)
        if unknown or not self.methods:
            raise ValueError(f"unknown or no consolidation method(s) {sorted(unknown)}; choose from {', '.join(METHODS)}")
        if set(self.naive) - set(NAIVE):
            raise ValueError(f"unknown naive peer(s) {sorted(set(self.naive) - set(NAIVE))}; choose from {', '.join(NAIVE)}")

    def worker_configs(self) -> dict[str, LearnerConfig]:
        return {"rl": self.config} | ({"distil_back": self.distil_back} if self.distil_back else {})

    def budget(self) -> dict:
        return {"minutes": self.minutes} if self.steps is None else {"steps": self.steps}


def retention_of(hive: Hive, worker: str) -> dict:
    """Retention KL and flips of a worker's live adapter on the base core."""
    core = hive.core_at(0)
    model = adapters.attach(core.model, LoraSpec(), path=hive.store.adapter_dir(worker, hive.store.worker(worker).live_version))
    try:
        kept = measure_retention(model, core, cache_dir(), adapter_over_base=True)
    finally:
        adapters.detach(model)
    return {"retention_kl": kept.kl, "flips": kept.flips}


def seed_from(hive: Hive, job, name: str, previous: str) -> None:
    """Start worker `name` (on `job`) from `previous`'s live adapter: the next stage of one adapter."""
    store, core = hive.store, hive.core_at(0)
    store.ensure_worker(name, job.name, core.name, job.describe(), 0, prompt_format=core.prompt_format.name)
    source = store.adapter_dir(previous, store.worker(previous).live_version)
    shutil.copytree(source, store.adapter_dir(name, 1))
    store.add_adapter_version(AdapterVersion(worker=name, version=1, parent=0, path=str(store.adapter_dir(name, 1)),
                                             run_id=None, step=0, final=True), [])


def workers_and_merges(hive: Hive, jobs, setup: ContinualSetup) -> tuple[dict, list, dict]:
    workers = {}
    for (worker, _, _), job in zip(setup.jobs, jobs):
        # every worker goes live by the user's override: the bench consolidates and measures (retention included)
        # what the workers learned, whatever the worker gate would say
        configs = setup.worker_configs()
        result = hive.learn(job, worker, learners=list(configs), configs=configs, show_progress=False, release="ungated",
                            seed=setup.seed, **setup.budget())
        workers[worker] = {"job": job.name, "before": result.before, "after": result.after, "seconds": result.learn_seconds,
                           "episodes": result.episodes} | retention_of(hive, worker)
    rows = [[hive.eval_worker(w, job).score for job in jobs] for w, _, _ in setup.jobs]
    print("workers", json.dumps(workers), flush=True)
    consolidated = {}
    for method in setup.methods:
        config = ConsolidateConfig(method=method, distill=DistillConfig(steps=setup.distill_steps, seed=setup.seed), release=False)
        result = hive.consolidate(config=config, jobs={w: j for (w, _, _), j in zip(setup.jobs, jobs)}, show_progress=False)
        consolidated[method] = result.model_dump()
        print(method, "kept", [s.gain_kept for s in result.jobs], "flips", result.flips, flush=True)
    return workers, rows, consolidated


def sequential_lora(hive: Hive, jobs, base: list[float], setup: ContinualSetup) -> dict:
    """One adapter learning the jobs in turn by plain GRPO (no anchor: the naive way)."""
    R, previous, naive = [], None, replace(setup.config, anchor_weight=0.0)
    for (worker, _, _), job in zip(setup.jobs, jobs):
        name = f"seq-{worker}"
        if previous is not None:
            seed_from(hive, job, name, previous)
        hive.learn(job, name, learners=["rl"], config=naive, show_progress=False, release="ungated", seed=setup.seed, **setup.budget())
        R.append([hive.eval_worker(name, j).score for j in jobs])
        previous = name
    return {"R": R, "transfer": transfer(R, base).__dict__, **retention_of(hive, previous)}


def run(hive_path: Path, core: str | None, setup: ContinualSetup) -> dict:
    hive = Hive(hive_path, core=core)
    jobs = [hive.job(spec, overrides) for _, spec, overrides in setup.jobs]
    started = time.perf_counter()
    base = [hive.eval_core(job, 0).score for job in jobs]
    workers, worker_rows, consolidated = workers_and_merges(hive, jobs, setup)
    naive = {}
    if "lora" in setup.naive:
        naive["sequential"] = sequential_lora(hive, jobs, base, setup)
        print("sequential LoRA", json.dumps(naive["sequential"]), flush=True)
    if "full" in setup.naive:
        naive["sequential_full"] = sequential_full(hive.core_at(0), jobs, Budget(**setup.budget()), setup.config, base,
                                                   seed=setup.seed)
        print("sequential full", json.dumps(naive["sequential_full"]), flush=True)
    return {"jobs": [j.name for j in jobs], "job_specs": [[s, o] for _, s, o in setup.jobs], "base": base,
            "workers": workers, "worker_rows": worker_rows, "consolidated": consolidated, **naive,
            "budget_per_job": setup.budget(), "distill_steps": setup.distill_steps, "seed": setup.seed,
            "wall_seconds": time.perf_counter() - started, "hive": str(hive.path)}
