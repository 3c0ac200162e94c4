"""Named default setups: which workers learn which jobs, with which RL settings, for how long.

`make demo` runs DEMO; the benchmarks start from these recipes (and change what they measure), so
the settings a figure was made with are named, not copied from the demo's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from apiary.learners.grpo import GRPOConfig


class WorkerPlan(NamedTuple):
    """One worker of a recipe: its name, the job spec it learns, and the spec's overrides."""

    worker: str
    spec: str
    overrides: list[str]


@dataclass(frozen=True)
class Recipe:
    name: str
    workers: tuple[WorkerPlan, ...]
    rl: GRPOConfig
    minutes: float  # learning minutes per worker


# Jobs where SmolLM2-135M-Instruct starts weak. The prompt asks for only the number and the
# scorer reads the first number of the completion (no partial credit for a long answer).
ONE_DIGIT = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"]
ARITH = WorkerPlan("arith", "rg:chain_sum", ONE_DIGIT)
TIMES = WorkerPlan("times", "rg:products", ONE_DIGIT)
GCD = WorkerPlan("gcd", "rg:gcd", ["min_numbers=2", "max_numbers=2", "max_value=20"])

# Sampling stops after 16 tokens while learning (the scorer reads the first number, so little after
# it changes the reward); the held-out eval still lets the model write the job's 32 tokens. An
# 8-token cap was faster per step but twice collapsed onto an echo format ("8 + 7 = 15") in trials.
DEMO = Recipe(name="demo", workers=(ARITH, TIMES), minutes=4.0,
              rl=GRPOConfig(prompts_per_step=16, samples_per_prompt=8, learning_rate=1e-3, max_new_tokens=16))

# `apiary bench`'s continual part: three jobs, the demo's RL settings, 3 minutes per job.
CONTINUAL = Recipe(name="continual", workers=(ARITH, TIMES, GCD), rl=DEMO.rl, minutes=3.0)
