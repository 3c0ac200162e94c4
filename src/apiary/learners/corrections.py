"""Learning from corrections: supervised fine-tuning of the worker's adapter on the right output.

A correction says what the worker should have answered. The update raises the log-probability
of that answer, as a complete reply ending the turn, given the episode's own prompt. Loss is the
per-token negative log-likelihood averaged within each answer, so a long correction does not
outweigh a short one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from apiary.jobs.base import Job
from apiary.learners.common import (Example, FeedbackConfig, FeedbackItem, LearnStep, StepStats, apply_update, mean_score,
                                    batch_logprobs, new_optimizer, sft_loss)
from apiary.models.generate import prompt_ids, reply_ids


@dataclass
class CorrectionsConfig(FeedbackConfig):
    """Settings of learning from corrections: those every feedback learner has (learners.common.FeedbackConfig)."""

    # lr 5e-4 (the others' 1e-3), in runs that distil back (what `apiary learn` and the server do by default): 64 corrections served over HTTP,
    # two seeds (docs/benchmarks.md, "Keeping what is learned"): at 1e-3 99 / 76 of 878 retention items flipped, both
    # refused by the default gate; at 5e-4 30 / 28, both released (held-out 0.20 -> 0.51 / 0.43).
    learning_rate: float = 5e-4


class CorrectionLearner:
    name = "corrections"
    kind = "correction"  # the feedback kind it consumes

    def __init__(self, model, tokenizer, job: Job, config: CorrectionsConfig, stop_ids: list[int],
                 generator: torch.Generator | None = None):
        self.model, self.tokenizer, self.job, self.config = model, tokenizer, job, config
        self.optimizer = new_optimizer(model, config.learning_rate)

    def learn(self, items: list[FeedbackItem]) -> LearnStep:
        started = time.perf_counter()
        examples = [Example(prompt_ids(self.tokenizer, it.episode.messages), reply_ids(self.tokenizer, it.feedback.text))
                    for it in items]
        loss, tokens = supervised_update(self.model, self.optimizer, examples, self.tokenizer.pad_token_id,
                                         self.config.max_grad_norm)
        stats = StepStats(reward_mean=mean_score([it.episode for it in items]), trained_samples=len(examples),
                          generated_tokens=0, trained_tokens=tokens, generate_seconds=0.0,
                          train_seconds=time.perf_counter() - started, loss=loss)
        return LearnStep(stats=stats, feedback_ids=[it.feedback.id for it in items])


def supervised_update(model, optimizer: torch.optim.Optimizer, examples: list[Example], pad_id: int,
                      max_grad_norm: float) -> tuple[float, int]:
    """One SFT step on `examples` (weighted by `Example.weight`); returns (loss, trained tokens)."""
    model.train()
    logprobs_C_L, mask_C_L = batch_logprobs(model, examples, pad_id)
    weights_C = torch.tensor([e.weight for e in examples], device=logprobs_C_L.device)
    loss = sft_loss(logprobs_C_L, mask_C_L, weights_C)
    return apply_update(model, optimizer, loss, max_grad_norm), int(mask_C_L.sum())
