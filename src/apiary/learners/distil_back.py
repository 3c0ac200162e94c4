"""Learn, then distil back: after every few steps of learning, a phase of distillation toward the core.

Where rl's anchor (learners.anchor) pulls the worker toward its core a little in every step, this
learner alternates: the other learners of the run learn for `every` steps, then it makes `updates`
updates of on-policy distillation toward the core on general prompts alone, the same loss as the
anchor's (the worker samples replies to anchor prompts, and is moved toward the core's next-token
distribution by the exact per-token reverse KL), and learning resumes. This is the cycle Thinking
Machines ("On-policy distillation", 2025) used to bring back behaviour a phase of training had
lost; whether alternating keeps more than interleaving is measured on the frontier
(bench/frontier.py, docs/benchmarks.md).

It learns nothing about the job, so a run must pair it with a learner that does (hive.mix).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from apiary.jobs.base import Job
from apiary.learners.anchor import DEFAULT_KINDS, CoreAnchor, anchor_prompts
from apiary.learners.common import LearnStep, StepStats, check_nonnegative, check_settings, new_optimizer


@dataclass
class DistilBackConfig:
    learning_rate: float = 2e-4  # rl's until 2026-12-03 (rl now 5e-4); served corrections were measured at 2e-4
    every: int = 5  # learning steps between two distillation phases
    updates: int = 5  # updates per phase; updates x prompts_per_update = every x rl's anchor prompts per step
    prompts_per_update: int = 8
    new_tokens: int = 24
    temperature: float = 1.0
    kinds: tuple[str, ...] = DEFAULT_KINDS  # which anchor prompts (learners.anchor.ANCHOR_KINDS)
    max_grad_norm: float = 1.0
    # sample the whole phase's replies (updates x prompts_per_update) in one batch before its first update, instead
    # of each update's before it: the batch decodes faster, and the later updates learn on replies a few updates old
    sample_at_once: bool = False

    def __post_init__(self):
        check_settings("distil_back", self.learning_rate, every=self.every, updates=self.updates,
                       prompts_per_update=self.prompts_per_update, new_tokens=self.new_tokens)
        check_nonnegative("distil_back", temperature=self.temperature)
        anchor_prompts(tuple(self.kinds))  # a clear error now for an unknown kind


class DistilBackLearner:
    name = "distil_back"

    def __init__(self, model, tokenizer, job: Job, config: DistilBackConfig, stop_ids: list[int],
                 generator: torch.Generator | None = None):
        self.model, self.config = model, config
        self.generator = generator or torch.Generator().manual_seed(0)
        self.optimizer = new_optimizer(model, config.learning_rate)
        self.anchor = CoreAnchor(tokenizer, stop_ids, 1.0, config.prompts_per_update, config.new_tokens,
                                 config.temperature, tuple(config.kinds))

    def learn(self, batch: list) -> LearnStep:
        """One distillation phase (`batch` is the phase's number; the prompts are drawn afresh)."""
        stats = StepStats(reward_mean=float("nan"), trained_samples=0, generated_tokens=0, trained_tokens=0,
                          generate_seconds=0.0, train_seconds=0.0)
        trained = [p for p in self.model.parameters() if p.requires_grad]
        kls, cfg = [], self.config
        started = time.perf_counter()
        sampled = self.anchor.sample(self.model, self.generator, cfg.updates * cfg.prompts_per_update) \
            if cfg.sample_at_once else None
        stats.generate_seconds = time.perf_counter() - started
        for update in range(cfg.updates):
            started = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            pairs = None if sampled is None else sampled[update::cfg.updates]  # an even share, empty replies left out
            figures = self.anchor.backward(self.model, self.generator, pairs)
            torch.nn.utils.clip_grad_norm_(trained, self.config.max_grad_norm)
            self.optimizer.step()
            kls.append(figures.kl)
            stats.generated_tokens += figures.tokens
            stats.trained_tokens += figures.tokens
            stats.trained_samples += self.config.prompts_per_update
            stats.generate_seconds += figures.sample_seconds
            stats.train_seconds += time.perf_counter() - started - figures.sample_seconds
        stats.loss = sum(kls) / len(kls)
        stats.extra = {"distil_back_kl": kls[0], "distil_back_kl_after": kls[-1]}
        return LearnStep(stats=stats)
