"""Group-relative policy gradient from the job's rewards ("GRPO", the plain kind): the RL learner.

Per step: take P training tasks, play G episodes of each (learners.play: one reply scored by the
job's scorer for a single-turn job, a whole game or tool task otherwise), advantage = episode score
- the mean score of its group (no std division: it over-weights near-solved groups), and push up the
log-probability of every token the worker wrote in a better-than-average episode, in every one of
its turns (credit for the outcome reaches all the turns that led to it). The environment's messages
and the chat template's framing carry no loss. One update per batch, so the PPO ratio is 1 and the
clipped objective reduces to this plain policy gradient.

Why it is fast on a CPU:
- sampling and the training forward read each prompt once and the job's shared prefix once
  (models.prefix), instead of once per sample;
- groups whose episodes all scored the same carry no signal and are not trained on at all;
- the loss runs only on the worker's tokens, and the vocabulary projection only there;
- the update is split into micro-batches of at most TOKEN_BUDGET tokens (episodes x longest, opening
  prompt included); their gradients add up before the one optimiser step. The saved activations grow
  with the tokens, about 2.6 MB a token for the bundled core with a rank-16 adapter and not with the
  square of the length (attention on a CPU keeps no weights); a small budget also runs faster on a
  long-episode job (docs/benchmarks.md, "Memory of a learning step").
Staying near the core (DESIGN.md, "Keeping what is learned"; both off by default, since a run pairs rl with
distil_back's phases toward the core, which kept more: learners.distil_back):
- `kl_coef`: a per-token KL(worker || core) on the worker's own tokens of the job's episodes (the k3
  estimator, exp(d) - d - 1 with d = log p_core - log p_worker: non-negative and unbiased on samples);
- `anchor_weight`: each step the worker also samples replies to a few general prompts and is pulled
  toward the core there by the exact per-token reverse KL (learners.anchor): on-policy distillation
  toward the core, where no job asks for anything.
Sampling from int8 weights (`sampler="int8"`, models.quantized): the rollouts come from the core's
linear layers and the adapter's current update quantised to int8 at each rollout (about 1.4x faster on
a loaded 2-core CPU, rough; docs/benchmarks.md), while the loss is the float32 model's. The sampler is
then slightly off the policy that is trained, so the decoder records each sampled token's log-prob under the sampler, the step reports the
gap (`sampler_kl`: the mean per-token k3 estimate of KL(sampler || learner) on the trained episodes),
and each token's policy-gradient term is weighted by the truncated importance ratio
min(p_learner / p_sampler, `is_cap`) (detached; as RL frameworks correct vLLM-vs-trainer mismatch).
With the float32 sampler the ratio is 1 and no correction is applied. Where the hardware multiplies bfloat16
natively (models.bf16), rollouts may come from bfloat16 copies of the weights (`sampler="bf16"`, corrected the
same way) and the update may run under bfloat16 autocast (`update_precision="bf16"`, the output projection
float32); on chain_sum neither changed what five minutes learn beyond noise (docs/benchmarks.md), so both are off.
Optionally (`stop_when_decided`), a reply ends as soon as the job's scorer has decided (numeric:
the first number is complete), since later tokens cannot change its reward. Measured on chain_sum it
saved little (the model writes its number last) and is off by default; see docs/benchmarks.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from peft import PeftModel

from apiary.jobs.base import Job, Task
from apiary.learners.anchor import DEFAULT_KINDS, AnchorFigures, CoreAnchor, anchor_prompts
from apiary.learners.common import LearnStep, StepStats, check_nonnegative, check_settings, new_optimizer
from apiary.learners.play import Transcript, play, transcript_episode
from apiary.models import adapters
from apiary.models.bf16 import bf16_sampler, check_precision, int8_sampler, update_autocast, usable
from apiary.models.generate import SamplingParams
from apiary.models.logprobs import completion_logprobs
from apiary.models.quantized import check_sampler

# Episodes x longest (prompt + episode) per micro-batch. GuessTheNumber, 4 x 8 games (python -m apiary.bench.step_memory):
# update peak 7.3 GB at 4096, 2.9 GB at 1024, and 1024 was faster; chain_sum's updates took the same time at either.
TOKEN_BUDGET = 1024
# What a multi-turn job (a game, tool use) learns with where the user does not say: 4 tasks x 8 whole episodes a step
# at temperature 0.7 (at 1.0 the 135M core rambles and makes fewer valid moves), as the long-horizon and frontier
# benchmarks do. 16 x 8 games made one step of GuessTheNumber last minutes, so `learn --minutes 5` ran far over.
MULTI_TURN = {"prompts_per_step": 4, "samples_per_prompt": 8, "temperature": 0.7}


@dataclass
class GRPOConfig:
    """Settings of the RL learner."""

    prompts_per_step: int = 16
    samples_per_prompt: int = 8
    # lr 5e-4 (since 2026-12-03; 2e-4 before): with distil_back's phases at their 2e-4 (the default run,
    # hive.mix.DEFAULT_LEARNERS), 5 minutes of learning, two seeds (docs/benchmarks.md, the frontier): chain_sum
    # +0.36 / +0.38, products +0.36 / +0.28, 19-32 of 878 flipped, all four released; at 2e-4 on products +0.20 / +0.20
    # and on chain_sum +0.27 / +0.32. The demo released its core at both (more learned at 5e-4). lr 1e-3 alone:
    # +0.29 / +0.42 on chain_sum (20 steps) at KL 0.21 / 0.28, 293 / 66 of 878 flipped, both refused.
    learning_rate: float = 5e-4
    temperature: float = 1.0
    max_new_tokens: int | None = None  # default: the job's max_tokens
    kl_coef: float = 0.0  # KL to the worker's core on its tokens of the job's episodes (k3 estimator), 0 = off
    max_grad_norm: float = 1.0
    stop_when_decided: bool = False  # end a reply once the job's scorer can no longer change its mind
    # Weight of the reverse KL to the core on general prompts in every step (learners.anchor), 0 = off. Off by default:
    # distil_back's phases kept far more at the same gain (weight 1, lr 2e-4: 55 / 80 flipped, one seed released).
    anchor_weight: float = 0.0
    anchor_prompts_per_step: int = 8
    anchor_new_tokens: int = 24  # reply length sampled on each anchor prompt
    anchor_kinds: tuple[str, ...] = DEFAULT_KINDS  # which anchor prompts (learners.anchor.ANCHOR_KINDS); adding
    # "short" did not lower the flips on chain_sum (71 / 88 of 878 against 55 / 80, two seeds; docs/benchmarks.md)
    sampler: str = "float32"  # "int8": rollouts from int8 core weights + the float32 adapter (models.quantized);
    # "bf16": from bfloat16 copies of the weights with the adapter's update merged in (models.bf16)
    is_cap: float = 2.0  # int8/bf16 sampler: cap C of the truncated importance weight min(p_learner / p_sampler, C); 0 = off
    update_precision: str = "float32"  # "bf16": the update's forward and backward under bfloat16 autocast (models.bf16)

    def __post_init__(self):
        check_settings("rl", self.learning_rate, prompts_per_step=self.prompts_per_step,
                       samples_per_prompt=self.samples_per_prompt, anchor_prompts_per_step=self.anchor_prompts_per_step,
                       anchor_new_tokens=self.anchor_new_tokens)
        check_nonnegative("rl", kl_coef=self.kl_coef, anchor_weight=self.anchor_weight, is_cap=self.is_cap)
        check_sampler(self.sampler)
        check_precision(self.update_precision)
        anchor_prompts(self.anchor_kinds)  # a clear error now for an unknown kind, not at the first step


def group_advantages(rewards_P_G: torch.Tensor) -> torch.Tensor:
    """Reward minus the mean of its group."""
    return rewards_P_G - rewards_P_G.mean(dim=1, keepdim=True)


def policy_loss(
    logprobs_C_L: torch.Tensor, mask_C_L: torch.Tensor, advantages_C: torch.Tensor,
    ref_logprobs_C_L: torch.Tensor | None = None, kl_coef: float = 0.0, is_weights_C_L: torch.Tensor | None = None,
) -> torch.Tensor:
    """-(advantage x sequence log-prob), averaged over completions; optional per-token KL to the core;
    `is_weights_C_L` (constants, `truncated_is_weights`), if given, weight each token's term."""
    weighted_C_L = logprobs_C_L * mask_C_L if is_weights_C_L is None else logprobs_C_L * mask_C_L * is_weights_C_L
    loss = -(advantages_C * weighted_C_L.sum(1)).mean()
    if ref_logprobs_C_L is not None and kl_coef > 0:
        loss = loss + kl_coef * k3_kl(logprobs_C_L, ref_logprobs_C_L, mask_C_L).sum(1).mean()
    return loss


def k3_kl(logprobs_C_L: torch.Tensor, ref_logprobs_C_L: torch.Tensor, mask_C_L: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(worker || core) from tokens the worker sampled: exp(d) - d - 1 with
    d = log p_core - log p_worker ("k3": never negative, unbiased, lower variance than -d); 0 off the mask."""
    delta_C_L = (ref_logprobs_C_L - logprobs_C_L) * mask_C_L
    return (torch.exp(delta_C_L) - delta_C_L - 1) * mask_C_L


def truncated_is_weights(logprobs_C_L: torch.Tensor, sampler_logprobs_C_L: torch.Tensor, cap: float) -> torch.Tensor:
    """min(p_learner / p_sampler, cap) per token, detached: the tokens were drawn from the sampler, the
    gradient is the learner's, and the cap bounds the variance a rare token could add."""
    return torch.exp(logprobs_C_L.detach() - sampler_logprobs_C_L).clamp(max=cap)


def sampler_kl_sum(logprobs_C_L: torch.Tensor, sampler_logprobs_C_L: torch.Tensor, mask_C_L: torch.Tensor) -> float:
    """Sum over the masked tokens of the k3 estimate of KL(sampler || learner), from the sampler's own tokens."""
    return float(k3_kl(sampler_logprobs_C_L, logprobs_C_L.detach(), mask_C_L).sum())


def sampler_logprobs(transcripts: list[Transcript], like_C_L: torch.Tensor) -> torch.Tensor:
    """The sampler's recorded log-prob of each transcript token, laid out as `masked_logprobs` lays out the learner's."""
    out_C_L = torch.zeros_like(like_C_L)
    for row, t in enumerate(transcripts):
        out_C_L[row, : len(t.sampler_logprobs)] = torch.tensor(t.sampler_logprobs, dtype=out_C_L.dtype)
    return out_C_L


def masked_logprobs(model, transcripts: list[Transcript], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(logprobs_C_L, mask_C_L) over each transcript's tokens after its opening prompt, with the mask
    1 only where the worker wrote the token. Identical opening prompts are read once."""
    prompts: dict[tuple[int, ...], int] = {}
    index = [prompts.setdefault(tuple(t.prompt_ids), len(prompts)) for t in transcripts]
    logprobs_C_L, mask_C_L = completion_logprobs(model, [list(p) for p in prompts], [t.ids for t in transcripts], index, pad_id,
                                                 needed=[t.model_mask for t in transcripts])
    model_C_L = torch.zeros_like(mask_C_L)
    for row, t in enumerate(transcripts):
        model_C_L[row, : len(t.model_mask)] = torch.tensor(t.model_mask)
    return logprobs_C_L * model_C_L, mask_C_L * model_C_L


def micro_batches(items: list, tokens: int, length=lambda item: len(item[0].prompt_ids) + len(item[0].ids)) -> list[list]:
    """Consecutive groups of `items`, each (at least one item) with rows x longest <= tokens."""
    groups, current, longest = [], [], 0
    for item in items:
        size = length(item)
        rows, widest = len(current) + 1, max(longest, size)
        if current and rows * widest > tokens:
            groups.append(current)
            current, longest = [], 0
        current.append(item)
        longest = max(longest, size)
    return groups + ([current] if current else [])


@dataclass
class PolicyFigures:
    """What one update's policy-gradient part did: its loss, the tokens it was taken on, and (int8/bf16 sampler)
    the summed KL(sampler || learner) estimate and how many tokens' importance ratios exceeded the cap."""

    loss: float = 0.0
    tokens: int = 0
    sampler_kl_sum: float = 0.0
    capped: int = 0


class GRPOLearner:
    name = "rl"

    def __init__(self, model: PeftModel, tokenizer, job: Job, config: GRPOConfig, stop_ids: list[int],
                 generator: torch.Generator | None = None):
        self.model, self.tokenizer, self.job, self.config, self.stop_ids = model, tokenizer, job, config, stop_ids
        self.optimizer = new_optimizer(model, config.learning_rate)
        self.generator = generator or torch.Generator().manual_seed(0)
        # None: float32 (chosen, or the fallback where int8 or bfloat16 does not run)
        self.fast = (int8_sampler(model, tokenizer) if config.sampler == "int8" else
                     bf16_sampler(model) if config.sampler == "bf16" else None)
        self.autocast = usable(config.update_precision, model.device, "the RL update")
        self.anchor = CoreAnchor(tokenizer, stop_ids, config.anchor_weight, config.anchor_prompts_per_step,
                                 config.anchor_new_tokens, config.temperature,
                                 tuple(config.anchor_kinds)) if config.anchor_weight > 0 else None

    def learn(self, tasks: list[Task]) -> LearnStep:
        """One step, with its episodes for the store."""
        transcripts, stats = self.step(tasks)
        return LearnStep(stats=stats, episodes=[transcript_episode(self.job, t) for t in transcripts])

    def rollout(self, tasks: list[Task]) -> list[Transcript]:
        """Play the group of episodes of each task (task-major), each scored by the job."""
        cfg = self.config
        params = SamplingParams(max_new_tokens=cfg.max_new_tokens or self.job.max_tokens, temperature=cfg.temperature)
        decided = self.job.scorer.decided if cfg.stop_when_decided else None
        done = (lambda ids: decided(self.tokenizer.decode(ids, skip_special_tokens=True))) if decided else None
        self.model.eval()
        with self.fast.sampling() if self.fast is not None else adapters.merged(self.model):
            return play(self.model, self.tokenizer, self.job, tasks, cfg.samples_per_prompt, params, self.stop_ids,
                        self.generator, done)

    def step(self, tasks: list[Task]) -> tuple[list[Transcript], StepStats]:
        started = time.perf_counter()
        transcripts = self.rollout(tasks)
        return transcripts, self.train(tasks, transcripts, time.perf_counter() - started)

    def train(self, tasks: list[Task], transcripts: list[Transcript], generate_seconds: float = 0.0) -> StepStats:
        """The update on `rollout(tasks)`'s episodes: group advantages, then one optimiser step on the groups
        that carried a signal; `generate_seconds` is the rollout's time, for the step's figures."""
        generated = time.perf_counter()
        group = self.config.samples_per_prompt
        advantages_P_G = group_advantages(torch.tensor([t.score for t in transcripts]).view(len(tasks), group))
        chosen = [(transcripts[p * group + g], float(advantages_P_G[p, g]))
                  for p in range(len(tasks)) if bool(advantages_P_G[p].abs().sum() > 0) for g in range(group)]
        turns, n = sum(t.turns for t in transcripts), max(1, len(transcripts))
        stats = StepStats(reward_mean=float(torch.tensor([t.score for t in transcripts]).mean()), trained_samples=len(chosen),
                          generated_tokens=sum(sum(t.model_mask) for t in transcripts), trained_tokens=0,
                          generate_seconds=generate_seconds, train_seconds=0.0,
                          extra={"invalid_rate": sum(t.invalid for t in transcripts) / max(1, turns),
                                 "success_rate": sum(t.success for t in transcripts) / n})
        anchored, policy = AnchorFigures(), PolicyFigures()
        if chosen or self.anchor is not None:  # the anchor pulls toward the core even when no group had a signal
            policy, anchored = self._update(chosen)
        stats.loss, stats.trained_tokens = policy.loss, policy.tokens
        if self.anchor is not None:
            stats.extra |= {"anchor_kl": anchored.kl, "anchor_tokens": anchored.tokens}
        if self.fast is not None and policy.tokens:
            stats.extra |= {"sampler_kl": policy.sampler_kl_sum / policy.tokens, "is_capped": policy.capped / policy.tokens}
        stats.generate_seconds += anchored.sample_seconds
        stats.train_seconds = time.perf_counter() - generated - anchored.sample_seconds
        return stats

    def _update(self, chosen: list[tuple[Transcript, float]]) -> tuple[PolicyFigures, AnchorFigures]:
        """One optimiser step on the RL loss of `chosen` (`_policy_backward`) plus, when on, the anchor
        term (`CoreAnchor`); returns the figures of both."""
        self.optimizer.zero_grad(set_to_none=True)
        policy = self._policy_backward(chosen) if chosen else PolicyFigures()
        anchored = self.anchor.backward(self.model, self.generator) if self.anchor is not None else AnchorFigures()
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], self.config.max_grad_norm)
        self.optimizer.step()
        self.model.eval()
        return policy, anchored

    def _policy_backward(self, chosen: list[tuple[Transcript, float]]) -> PolicyFigures:
        """Gradients of the mean over `chosen` of `policy_loss`, in micro-batches when needed; with the
        int8 or bf16 sampler, each token weighted by its truncated importance ratio (unless `is_cap` is 0); with
        `update_precision` bf16, forward and backward under bfloat16 autocast."""
        parts = micro_batches(chosen, TOKEN_BUDGET)
        pad = self.tokenizer.pad_token_id
        refs = [None] * len(parts)
        if self.config.kl_coef > 0:
            # The worker's core: a worker on core version N has N's core adapters merged into the base
            # weights (models.core.with_core_updates), so its adapter disabled is exactly that core.
            with torch.no_grad(), self.model.disable_adapter(), update_autocast(self.model.device, self.autocast):
                refs = [masked_logprobs(self.model, [t for t, _ in part], pad)[0] for part in parts]
        self.model.train()
        figures = PolicyFigures()
        for part, ref_C_L in zip(parts, refs):
            transcripts = [t for t, _ in part]
            with update_autocast(self.model.device, self.autocast):
                logprobs_C_L, mask_C_L = masked_logprobs(self.model, transcripts, pad)
            advantages_C = torch.tensor([a for _, a in part], device=logprobs_C_L.device)
            weights_C_L = None
            if self.fast is not None:  # the float32 sampler is the policy itself: its ratio is 1
                sampled_C_L = sampler_logprobs(transcripts, logprobs_C_L) * mask_C_L
                figures.sampler_kl_sum += sampler_kl_sum(logprobs_C_L, sampled_C_L, mask_C_L)
                if self.config.is_cap > 0:
                    weights_C_L = truncated_is_weights(logprobs_C_L, sampled_C_L, self.config.is_cap)
                    figures.capped += int(((weights_C_L == self.config.is_cap) & mask_C_L.bool()).sum())
            loss = policy_loss(logprobs_C_L, mask_C_L, advantages_C, ref_C_L, self.config.kl_coef,
                               weights_C_L) * (len(part) / len(chosen))
            loss.backward()  # autocast covers the forward; the backward runs in the forward's types
            figures.loss, figures.tokens = figures.loss + float(loss.detach()), figures.tokens + int(mask_C_L.sum())
        return figures
