"""Named default setups: which workers learn which jobs, with which RL settings, for how long.

`make demo` runs DEMO; the benchmarks start from these recipes (and change what they measure), so
the settings a figure was made with are named, not copied from the demo's code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

from apiary.hive.consolidate import ConsolidateConfig
from apiary.learners.common import LearnerConfig
from apiary.learners.distil_back import DistilBackConfig
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
    minutes: float  # learning minutes per worker (the demo's budget: see DEMO)
    consolidation: ConsolidateConfig = field(default_factory=ConsolidateConfig)  # how run_demo consolidates
    distil_back: DistilBackConfig | None = None  # set: learn, then distil back (learners.distil_back) beside rl

    def configs(self) -> dict[str, LearnerConfig]:
        """Settings by learner, as Hive.learn takes them: rl's, and distil_back's when the recipe cycles."""
        return {"rl": self.rl} | ({"distil_back": self.distil_back} if self.distil_back else {})


# Jobs where SmolLM2-135M-Instruct starts weak. The prompt asks for only the number and the
# scorer reads the first number of the completion (no partial credit for a long answer).
ONE_DIGIT = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"]
ARITH = WorkerPlan("arith", "rg:chain_sum", ONE_DIGIT)
TIMES = WorkerPlan("times", "rg:products", ONE_DIGIT)
GCD = WorkerPlan("gcd", "rg:gcd", ["min_numbers=2", "max_numbers=2", "max_value=20"])

# The demo's budget: the whole loop within 15 minutes on 2 CPU cores (issue 16). Estimates, per piece, from
# docs/benchmarks.md (the demo: 246 s of learning in a 4-minute budget, about 25 s of held-out evals per
# worker) and rough timings of the pieces (reported with issue 16's consolidation work, not a demo run):
#   load the core                                                            ~20 s
#   per worker: M minutes of learning (kept: no step past it), evals         60 M + 10 + 25 s
#               worker gate: retention KL ~5 s, items ~9 s (135) / ~60 s (878)
#   the base core's item scores, first demo only (then cached)               ~9 s / ~60 s
#   consolidation: distillation, 16 steps x ~9 s                             ~145 s
#                  candidate held-out (150 items), retention KL + items        ~20 + 5 + 9 / 60 s
# With the 878-item retention suite: M = 4 gives ~16.5 min, M = 3 gives ~14.5 min; with the 135-item
# suite, M = 4 gives ~13 min. The suite is growing to 878 items, so M = 3. Measure with `make demo`.
# Measured 2026-12-03 with the budget kept: 10 min 59 s at M = 3 (rl at lr 2e-4), 10 min 25 s (rl at 5e-4; both in
# docs/benchmarks.md); M = 4 is not measured.
#
# Sampling stops after 16 tokens while learning (the scorer reads the first number, so little after
# it changes the reward); the held-out eval still lets the model write the job's 32 tokens. An
# 8-token cap was faster per step but twice collapsed onto an echo format ("8 + 7 = 15") in trials.
DEMO = Recipe(name="demo", workers=(ARITH, TIMES), minutes=3.0,
              rl=GRPOConfig(prompts_per_step=16, samples_per_prompt=8, max_new_tokens=16,
                               anchor_weight=0.0),
              distil_back=DistilBackConfig(learning_rate=2e-4),
              consolidation=ConsolidateConfig(method="linear"))
# Learning: rl at its default lr (5e-4) without its per-step anchor, and learn-then-distil-back (5 updates of
# distillation toward the core on general prompts after every 5 rl steps, lr 2e-4): on the frontier
# (docs/benchmarks.md) rl at 2e-4 this way gained +0.40 / +0.42 on chain_sum in 20 steps with 4 / 13 of 878
# retention items flipped (two seeds, both passed the default gate) and 0.00 -> 1.00 on products, where rl with the
# per-step anchor flipped 55 / 80 (one passed). In the demo's 3 minutes lr 5e-4 learned more: chain_sum 0.20 -> 0.55
# and products 0.00 -> 0.42 (6 and 6 flipped), against 0.35 and 0.10 at 2e-4 (one demo run each).
# Consolidation by a linear merge (task arithmetic): on two demo workers of the anchored rl (both passed their
# gates), the default distillation was refused (36 of 878 flipped, 32.1 allowed; kept 1.09 / 0.83 of the gains;
# 293 s), distillation with anchor weight 8 too (47 flipped, 34.3 allowed), and the linear merge passed (51 flipped,
# 53.9 allowed at its higher KL 0.036; kept 0.94 / 0.92; 102 s). One pair of workers (docs/benchmarks.md).

# `apiary bench`'s continual part: three jobs, the demo's learning (rl, then distil back), 3 minutes per job.
# Its naive peers learn by plain GRPO: the same rl settings without distil_back.
CONTINUAL = Recipe(name="continual", workers=(ARITH, TIMES, GCD), rl=DEMO.rl, minutes=3.0,
                   distil_back=DEMO.distil_back)
