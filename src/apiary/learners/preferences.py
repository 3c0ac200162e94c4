"""Learning from preferences: a DPO loss on each pair (this answer over that one, same prompt).

The reference policy is the core (the adapter switched off), as usual for LoRA preference
tuning: no second copy of the model is kept. Its log-probs are computed once per batch without
gradients; the update raises the preferred answer's log-ratio to the reference relative to the
other's (Rafailov et al., 2023), which needs no reward model and no sampling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from apiary.jobs.base import Job
from apiary.learners.common import (Example, FeedbackConfig, FeedbackItem, LearnStep, StepStats, apply_update, mean_score,
                                    batch_logprobs, dpo_loss, new_optimizer)
from apiary.models.generate import prompt_ids, reply_ids


@dataclass
class PreferencesConfig(FeedbackConfig):
    """Settings of learning from preferences."""

    beta: float = 0.1  # DPO temperature


class PreferenceLearner:
    name = "preferences"
    kind = "preference"

    def __init__(self, model, tokenizer, job: Job, config: PreferencesConfig, stop_ids: list[int],
                 generator: torch.Generator | None = None):
        self.model, self.tokenizer, self.job, self.config = model, tokenizer, job, config
        self.optimizer = new_optimizer(model, config.learning_rate)

    def learn(self, items: list[FeedbackItem]) -> LearnStep:
        started = time.perf_counter()
        tok, pad = self.tokenizer, self.tokenizer.pad_token_id
        prompts = [prompt_ids(tok, it.episode.messages) for it in items]
        # chosen answers first, then the rejected ones, in one teacher-forced batch
        examples = ([Example(p, reply_ids(tok, it.episode.completion)) for p, it in zip(prompts, items)]
                    + [Example(p, reply_ids(tok, it.other.completion)) for p, it in zip(prompts, items)])
        with torch.no_grad(), self.model.disable_adapter():
            ref_C = _sequence_logprobs(self.model, examples, pad)
        self.model.train()
        policy_C = _sequence_logprobs(self.model, examples, pad)
        n = len(items)
        loss = dpo_loss(policy_C[:n], policy_C[n:], ref_C[:n], ref_C[n:], self.config.beta)
        value = apply_update(self.model, self.optimizer, loss, self.config.max_grad_norm)
        margin = float(((policy_C[:n] - ref_C[:n]) - (policy_C[n:] - ref_C[n:])).detach().mean())
        stats = StepStats(reward_mean=mean_score([it.episode for it in items]), trained_samples=2 * n, generated_tokens=0,
                          trained_tokens=sum(len(e.completion_ids) for e in examples), generate_seconds=0.0,
                          train_seconds=time.perf_counter() - started, loss=value, extra={"margin": margin})
        return LearnStep(stats=stats, feedback_ids=[it.feedback.id for it in items])


def _sequence_logprobs(model, examples: list[Example], pad_id: int) -> torch.Tensor:
    logprobs_C_L, mask_C_L = batch_logprobs(model, examples, pad_id)
    return (logprobs_C_L * mask_C_L).sum(1)
