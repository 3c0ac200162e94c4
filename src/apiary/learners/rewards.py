"""Learning from rewards people gave to recorded episodes (not from the job's scorer).

An offline policy gradient: each rated answer is pushed up or down by its advantage, the reward
minus a baseline. The baseline is the mean reward of the other rated answers to the same prompt
when there are some (as in GRPO), else the mean reward of the batch. Rated episodes may come from
an older adapter version; with few epochs (the default three passes) the drift is small, and the
update stays the plain on-policy estimator instead of importance-weighting stale samples.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import torch

from apiary.jobs.base import Job
from apiary.learners.common import (Example, FeedbackConfig, FeedbackItem, LearnStep, StepStats, apply_update, batch_logprobs,
                                    new_optimizer)
from apiary.learners.grpo import policy_loss
from apiary.models.generate import prompt_ids, reply_ids


def baseline_advantages(prompts: list[str], rewards: list[float]) -> list[float]:
    """Reward minus the mean reward of the same prompt's other ratings (or of the whole batch)."""
    by_prompt: dict[str, list[float]] = defaultdict(list)
    for prompt, reward in zip(prompts, rewards):
        by_prompt[prompt].append(reward)
    batch_mean = sum(rewards) / len(rewards)
    advantages = []
    for prompt, reward in zip(prompts, rewards):
        group = by_prompt[prompt]
        baseline = (sum(group) - reward) / (len(group) - 1) if len(group) > 1 else batch_mean
        advantages.append(reward - baseline)
    return advantages


@dataclass
class RewardsConfig(FeedbackConfig):
    """Settings of learning from people's rewards: those every feedback learner has (learners.common.FeedbackConfig)."""


class RewardLearner:
    name = "rewards"
    kind = "reward"

    def __init__(self, model, tokenizer, job: Job, config: RewardsConfig, stop_ids: list[int],
                 generator: torch.Generator | None = None):
        self.model, self.tokenizer, self.job, self.config = model, tokenizer, job, config
        self.optimizer = new_optimizer(model, config.learning_rate)

    def learn(self, items: list[FeedbackItem]) -> LearnStep:
        started = time.perf_counter()
        rewards = [it.feedback.reward for it in items]
        keys = [repr(it.episode.messages) for it in items]
        advantages = baseline_advantages(keys, rewards)
        stats = StepStats(reward_mean=sum(rewards) / len(rewards), trained_samples=0, generated_tokens=0,
                          trained_tokens=0, generate_seconds=0.0, train_seconds=0.0)
        chosen = [(it, a) for it, a in zip(items, advantages) if a != 0.0]
        if chosen:
            examples = [Example(prompt_ids(self.tokenizer, it.episode.messages), reply_ids(self.tokenizer, it.episode.completion))
                        for it, _ in chosen]
            self.model.train()
            logprobs_C_L, mask_C_L = batch_logprobs(self.model, examples, self.tokenizer.pad_token_id)
            advantages_C = torch.tensor([a for _, a in chosen], device=logprobs_C_L.device)
            stats.loss = apply_update(self.model, self.optimizer, policy_loss(logprobs_C_L, mask_C_L, advantages_C),
                                      self.config.max_grad_norm)
            stats.trained_samples, stats.trained_tokens = len(chosen), int(mask_C_L.sum())
        stats.train_seconds = time.perf_counter() - started
        return LearnStep(stats=stats, feedback_ids=[it.feedback.id for it in items])
