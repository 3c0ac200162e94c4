"""`make demo`: the bundled core becomes two workers that learn reasoning-gym jobs on the job."""

from __future__ import annotations

from apiary.hive.hive import Hive, LearnResult
from apiary.learners.grpo import GRPOConfig

# Jobs where SmolLM2-135M-Instruct starts weak. The prompt asks for only the number and the
# scorer reads the first number of the completion (no partial credit for a long answer).
DEMO_JOBS = [
    ("arith", "rg:chain_sum", ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"]),
    ("times", "rg:products", ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"]),
]

# Sampling stops after 16 tokens while learning (the scorer reads the first number, so little after
# it changes the reward); the held-out eval still lets the model write the job's 32 tokens. An
# 8-token cap was faster per step but twice collapsed onto an echo format ("8 + 7 = 15") in trials.
DEMO_CONFIG = GRPOConfig(prompts_per_step=16, samples_per_prompt=8, learning_rate=1e-3, max_new_tokens=16)


def run_demo(hive: Hive, minutes: float = 4.0, show_progress: bool = True) -> list[LearnResult]:
    return [
        hive.learn(spec, worker, minutes=minutes, config=DEMO_CONFIG, overrides=overrides, show_progress=show_progress)
        for worker, spec, overrides in DEMO_JOBS
    ]
