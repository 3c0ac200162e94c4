"""The naive full fine-tuning baseline: every weight of one copy of the core trained on the jobs in turn.

Same RL learner and settings as the workers (GRPO, demo settings), except that all parameters train,
the learning rate is a usual full fine-tuning one (LoRA's would wreck the full model), and there is no
anchor toward the core: the naive way, and a plain model has no adapter to switch off for the core.
After each job it is scored on every job (the forgetting matrix R); after the last, retention (KL
to the base core and right-to-wrong flips) like every other model in the continual benchmark.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace

import torch

from apiary.evals.candidate import measure_retention
from apiary.evals.forgetting import transfer
from apiary.evals.heldout import evaluate
from apiary.hive.training import Budget
from apiary.jobs.base import Job
from apiary.learners.common import new_optimizer
from apiary.learners.grpo import GRPOConfig, GRPOLearner
from apiary.models.core import Core, cache_dir

FULL_FT_LEARNING_RATE = 1e-5


def sequential_full(core: Core, jobs: list[Job], budget: Budget, config: GRPOConfig, base: list[float],
                    learning_rate: float = FULL_FT_LEARNING_RATE, seed: int = 0) -> dict:
    model = copy.deepcopy(core.model).requires_grad_(True)
    config = replace(config, learning_rate=learning_rate, anchor_weight=0.0)
    optimizer, generator = new_optimizer(model, learning_rate), torch.Generator().manual_seed(seed)
    R, stages = [], []
    try:
        for job in jobs:
            learner = GRPOLearner(model, core.tokenizer, job, config, core.stop_token_ids, generator)
            learner.optimizer = optimizer  # one optimizer across the jobs, as a naive sequential run has
            steps, began = 0, time.perf_counter()
            while not budget.done(steps, time.perf_counter() - began):
                learner.step(job.source.train(steps * config.prompts_per_step, config.prompts_per_step))
                steps += 1
            stages.append({"job": job.name, "steps": steps, "seconds": time.perf_counter() - began})
            R.append([evaluate(model, core.tokenizer, j, core.stop_token_ids).score for j in jobs])
            print(f"  full fine-tuning after {job.name}: {R[-1]}", flush=True)
        model.eval()
        kept = measure_retention(model, core, cache_dir(), adapter_over_base=False)
    finally:
        del model, optimizer
    return {"R": R, "transfer": transfer(R, base).__dict__, "retention_kl": kept.kl, "flips": kept.flips,
            "learning_rate": learning_rate, "stages": stages}
