"""Group-relative policy gradient from verifiable rewards ("GRPO", the plain kind).

Per step: take P training tasks, sample G completions each, score them with the job's scorer,
advantage = reward - group mean (no std division: it over-weights near-solved groups), and
push up the log-probability of better-than-average completions. One update per batch, so the
PPO ratio is 1 and the clipped objective reduces to this plain policy gradient.

Why it is fast on a CPU:
- sampling and the training forward read each prompt once and the job's shared prefix once
  (models.prefix), instead of once per sample;
- groups whose samples all scored the same carry no signal and are not trained on at all;
- the loss runs only on completion tokens.
Optionally (`stop_when_decided`), a sample ends as soon as the job's scorer has decided (numeric:
the first number is complete), since later tokens cannot change its reward. Measured on chain_sum it
saved little (the model writes its number last) and is off by default; see docs/benchmarks.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from peft import PeftModel

from apiary.jobs.base import Job, Task
from apiary.learners.common import LearnStep, StepStats, apply_update, new_optimizer
from apiary.models import adapters
from apiary.models.generate import SamplingParams, generate, prompt_ids
from apiary.models.logprobs import completion_logprobs
from apiary.store.records import Episode


@dataclass
class GRPOConfig:
    prompts_per_step: int = 16
    samples_per_prompt: int = 8
    learning_rate: float = 1e-3  # the setting the demo and benchmark measured on the 135M core
    temperature: float = 1.0
    max_new_tokens: int | None = None  # default: the job's max_tokens
    kl_coef: float = 0.0  # optional KL to the core (k3 estimator), 0 = off
    max_grad_norm: float = 1.0
    stop_when_decided: bool = False  # end a sample once the job's scorer can no longer change its mind


@dataclass
class Sample:
    task: Task
    prompt_ids: list[int]
    completion_ids: list[int]
    completion: str
    reward: float


def group_advantages(rewards_P_G: torch.Tensor) -> torch.Tensor:
    """Reward minus the mean of its group."""
    return rewards_P_G - rewards_P_G.mean(dim=1, keepdim=True)


def policy_loss(
    logprobs_C_L: torch.Tensor, mask_C_L: torch.Tensor, advantages_C: torch.Tensor,
    ref_logprobs_C_L: torch.Tensor | None = None, kl_coef: float = 0.0,
) -> torch.Tensor:
    """-(advantage x sequence log-prob), averaged over completions; optional per-token KL to the core."""
    loss = -(advantages_C * (logprobs_C_L * mask_C_L).sum(1)).mean()
    if ref_logprobs_C_L is not None and kl_coef > 0:
        delta = (ref_logprobs_C_L - logprobs_C_L) * mask_C_L
        kl_C = ((torch.exp(delta) - delta - 1) * mask_C_L).sum(1)
        loss = loss + kl_coef * kl_C.mean()
    return loss


class GRPOLearner:
    name = "grpo"

    def __init__(self, model: PeftModel, tokenizer, job: Job, config: GRPOConfig, stop_ids: list[int], seed: int = 0,
                 optimizer: torch.optim.Optimizer | None = None, generator: torch.Generator | None = None):
        self.model, self.tokenizer, self.job, self.config = model, tokenizer, job, config
        self.stop_ids = stop_ids
        self.optimizer = optimizer or new_optimizer(model, config.learning_rate)
        self.generator = generator or torch.Generator().manual_seed(seed)

    def learn(self, tasks: list[Task]) -> LearnStep:
        """One step, with its samples as episodes for the store."""
        samples, stats = self.step(tasks)
        episodes = [Episode(job=self.job.name, task_id=s.task.id, messages=self.job.messages(s.task), completion=s.completion,
                            score=s.reward, answer=s.task.answer) for s in samples]
        return LearnStep(stats=stats, episodes=episodes)

    def encode(self, task: Task) -> list[int]:
        return prompt_ids(self.tokenizer, self.job.messages(task))

    def rollout(self, tasks: list[Task]) -> list[Sample]:
        """Sample the group for each task and score every completion with the job's scorer."""
        cfg = self.config
        prompts = [self.encode(t) for t in tasks]
        params = SamplingParams(max_new_tokens=cfg.max_new_tokens or self.job.max_tokens, temperature=cfg.temperature)
        decided = self.job.scorer.decided if cfg.stop_when_decided else None
        done = (lambda ids: decided(self.tokenizer.decode(ids, skip_special_tokens=True))) if decided else None
        self.model.eval()
        with adapters.merged(self.model):
            outputs = generate(self.model, prompts, cfg.samples_per_prompt, params, self.stop_ids,
                               self.tokenizer.pad_token_id, self.generator, done)
        samples = []
        for i, completion_ids in enumerate(outputs):
            task = tasks[i // cfg.samples_per_prompt]
            text = self.tokenizer.decode(completion_ids, skip_special_tokens=True)
            samples.append(Sample(task, prompts[i // cfg.samples_per_prompt], completion_ids, text, self.job.score(task, text)))
        return samples

    def step(self, tasks: list[Task]) -> tuple[list[Sample], StepStats]:
        started = time.perf_counter()
        samples = self.rollout(tasks)
        generated = time.perf_counter()
        group = self.config.samples_per_prompt
        rewards_P_G = torch.tensor([s.reward for s in samples]).view(len(tasks), group)
        advantages_P_G = group_advantages(rewards_P_G)
        informative = [p for p in range(len(tasks)) if bool(advantages_P_G[p].abs().sum() > 0)]
        stats = StepStats(
            reward_mean=float(rewards_P_G.mean()), trained_samples=len(informative) * group,
            generated_tokens=sum(len(s.completion_ids) for s in samples), trained_tokens=0,
            generate_seconds=generated - started, train_seconds=0.0,
        )
        if informative:
            stats.loss, stats.trained_tokens = self._update(samples, informative, advantages_P_G)
        stats.train_seconds = time.perf_counter() - generated
        return samples, stats

    def _update(self, samples: list[Sample], prompts: list[int], advantages_P_G: torch.Tensor) -> tuple[float, int]:
        group = self.config.samples_per_prompt
        chosen = [samples[p * group + g] for p in prompts for g in range(group)]
        prompt_ids = [samples[p * group].prompt_ids for p in prompts]
        index = [i for i in range(len(prompts)) for _ in range(group)]
        completions = [s.completion_ids for s in chosen]
        advantages_C = advantages_P_G[prompts].reshape(-1)
        pad = self.tokenizer.pad_token_id
        ref = None
        if self.config.kl_coef > 0:
            with torch.no_grad(), self.model.disable_adapter():
                ref, _ = completion_logprobs(self.model, prompt_ids, completions, index, pad)
        self.model.train()
        logprobs_C_L, mask_C_L = completion_logprobs(self.model, prompt_ids, completions, index, pad)
        loss = policy_loss(logprobs_C_L, mask_C_L, advantages_C, ref, self.config.kl_coef)
        return apply_update(self.model, self.optimizer, loss, self.config.max_grad_norm), int(mask_C_L.sum())
