"""Group-relative policy gradient over whole multi-turn episodes (games, tool use).

Per step: take P training tasks, play G episodes of each to the end (learners.play), advantage =
episode score - the mean score of its group, and push up the log-probability of every token the
worker wrote in a better-than-average episode, in every one of its turns (credit for the outcome
reaches all the turns that led to it). The environment's messages and the chat template's framing
carry no loss. Groups whose episodes all scored the same carry no signal and are skipped, as in
learners.grpo, whose advantage and loss this learner shares.

Episodes are long (a game of 12 turns is 500-2500 tokens), so the update runs in micro-batches
whose gradients add up before the single optimiser step; a micro-batch's episodes x length is at
most TOKEN_BUDGET and episodes x length^2 at most ATTENTION_BUDGET (attention's saved weights grow
with the square of the length), and the vocabulary projection runs only on the worker's own tokens.
"""

from __future__ import annotations

import time

import torch
from peft import PeftModel

from apiary.jobs.base import Job, Task
from apiary.learners.common import LearnStep, StepStats, new_optimizer
from apiary.learners.grpo import GRPOConfig, group_advantages, policy_loss
from apiary.learners.play import Transcript, play
from apiary.models import adapters
from apiary.models.generate import SamplingParams
from apiary.models.logprobs import completion_logprobs
from apiary.store.records import Episode

TOKEN_BUDGET = 4096  # episodes x length per micro-batch (activations grow with the tokens: ~8 GB here)
ATTENTION_BUDGET = 2**22  # episodes x length^2 per micro-batch (attention's saved weights): 1 episode of 2000


def transcript_episode(job: Job, transcript: Transcript) -> Episode:
    """The store's record of a played episode: every turn is in `messages` + `completion` (the last reply)."""
    return Episode(job=job.name, task_id=transcript.task.id, messages=transcript.context, completion=transcript.completion,
                   score=transcript.score, answer=transcript.task.answer or None, info=transcript.info())


def masked_logprobs(model, transcripts: list[Transcript], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(logprobs_C_L, mask_C_L) over each transcript's tokens after its opening prompt, with the mask
    1 only where the worker wrote the token."""
    prompts: dict[tuple[int, ...], int] = {}
    index = [prompts.setdefault(tuple(t.prompt_ids), len(prompts)) for t in transcripts]
    logprobs_C_L, mask_C_L = completion_logprobs(model, [list(p) for p in prompts], [t.ids for t in transcripts], index, pad_id,
                                                 needed=[t.model_mask for t in transcripts])
    model_C_L = torch.zeros_like(mask_C_L)
    for row, t in enumerate(transcripts):
        model_C_L[row, : len(t.model_mask)] = torch.tensor(t.model_mask)
    return logprobs_C_L * model_C_L, mask_C_L * model_C_L


def micro_batches(items: list, tokens: int, attention: int, length=lambda item: len(item[0].ids)) -> list[list]:
    """Consecutive groups of `items`, each (at least one item) with rows x longest <= tokens and
    rows x longest^2 <= attention."""
    groups, current, longest = [], [], 0
    for item in items:
        size = length(item) + 1
        rows, widest = len(current) + 1, max(longest, size)
        if current and (rows * widest > tokens or rows * widest**2 > attention):
            groups.append(current)
            current, longest = [], 0
        current.append(item)
        longest = max(longest, size)
    return groups + ([current] if current else [])


class MultiTurnGRPOLearner:
    name = "grpo"

    def __init__(self, model: PeftModel, tokenizer, job: Job, config: GRPOConfig, stop_ids: list[int], seed: int = 0,
                 optimizer: torch.optim.Optimizer | None = None, generator: torch.Generator | None = None):
        if not job.multi_turn:
            raise ValueError(f"job {job.name} is single-turn: use learners.grpo.GRPOLearner")
        self.model, self.tokenizer, self.job, self.config, self.stop_ids = model, tokenizer, job, config, stop_ids
        self.optimizer = optimizer or new_optimizer(model, config.learning_rate)
        self.generator = generator or torch.Generator().manual_seed(seed)

    def learn(self, tasks: list[Task]) -> LearnStep:
        transcripts, stats = self.step(tasks)
        return LearnStep(stats=stats, episodes=[transcript_episode(self.job, t) for t in transcripts])

    def rollout(self, tasks: list[Task]) -> list[Transcript]:
        cfg = self.config
        params = SamplingParams(max_new_tokens=cfg.max_new_tokens or self.job.max_tokens, temperature=cfg.temperature)
        self.model.eval()
        with adapters.merged(self.model):
            return play(self.model, self.tokenizer, self.job, tasks, cfg.samples_per_prompt, params, self.stop_ids,
                        self.generator)

    def step(self, tasks: list[Task]) -> tuple[list[Transcript], StepStats]:
        started = time.perf_counter()
        transcripts = self.rollout(tasks)
        generated = time.perf_counter()
        group = self.config.samples_per_prompt
        advantages_P_G = group_advantages(torch.tensor([t.score for t in transcripts]).view(len(tasks), group))
        chosen = [(transcripts[p * group + g], float(advantages_P_G[p, g]))
                  for p in range(len(tasks)) if bool(advantages_P_G[p].abs().sum() > 0) for g in range(group)]
        stats = StepStats(reward_mean=sum(t.score for t in transcripts) / len(transcripts), trained_samples=len(chosen),
                          generated_tokens=sum(sum(t.model_mask) for t in transcripts), trained_tokens=0,
                          generate_seconds=generated - started, train_seconds=0.0,
                          extra={"invalid_rate": sum(t.invalid for t in transcripts) / max(1, sum(t.turns for t in transcripts)),
                                 "success_rate": sum(t.success for t in transcripts) / len(transcripts)})
        if chosen:
            stats.loss, stats.trained_tokens = self._update(chosen)
        stats.train_seconds = time.perf_counter() - generated
        return transcripts, stats

    def _update(self, chosen: list[tuple[Transcript, float]]) -> tuple[float, int]:
        """One optimiser step; the loss is the mean over `chosen` of learners.grpo.policy_loss, in micro-batches."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total, tokens = 0.0, 0
        for part in micro_batches(chosen, TOKEN_BUDGET, ATTENTION_BUDGET):
            logprobs_C_L, mask_C_L = masked_logprobs(self.model, [t for t, _ in part], self.tokenizer.pad_token_id)
            loss = policy_loss(logprobs_C_L, mask_C_L, torch.tensor([a for _, a in part])) * (len(part) / len(chosen))
            loss.backward()
            total, tokens = total + float(loss.detach()), tokens + int(mask_C_L.sum())
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], self.config.max_grad_norm)
        self.optimizer.step()
        self.model.eval()
        return total, tokens
