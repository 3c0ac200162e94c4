"""What every learner shares: the record of one update, teacher-forced batches, and the losses.

A learner turns a batch (tasks, feedback, or failed episodes) into one adapter update and says
what it used and made: `LearnStep.feedback_ids` (the feedback it learned from) and
`LearnStep.episodes` (new attempts it wrote: rollouts, improved answers, practice). The training
loop stores both and links them to the next adapter version, so provenance needs no help from
the learner beyond telling the truth here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from apiary.models.logprobs import completion_logprobs
from apiary.store.records import Episode, Feedback


def mean_score(episodes) -> float:
    """Mean job score of the scored episodes (served replies have none); NaN if none is scored."""
    scores = [e.score for e in episodes if e.score is not None]
    return sum(scores) / len(scores) if scores else float("nan")


@dataclass
class StepStats:
    reward_mean: float
    trained_samples: int
    generated_tokens: int
    trained_tokens: int
    generate_seconds: float
    train_seconds: float
    loss: float = 0.0
    extra: dict = field(default_factory=dict)


@dataclass
class LearnStep:
    stats: StepStats
    episodes: list[Episode] = field(default_factory=list)  # new attempts, not yet stored
    feedback_ids: list[int] = field(default_factory=list)  # feedback this update learned from


@dataclass
class FeedbackItem:
    """A piece of feedback with the episode it is about (and, for a preference, the other one)."""

    feedback: Feedback
    episode: Episode
    other: Episode | None = None


@dataclass
class FeedbackConfig:
    """Settings of the learners that learn from feedback and practice."""

    batch_size: int = 16  # feedback items (or practice tasks) per update
    epochs: int = 3  # how many times each piece of feedback is learned from in one run
    beta: float = 0.1  # preferences: DPO temperature
    tries: int = 4  # critiques: improved answers sampled per critique; practice: solutions per task
    temperature: float = 0.7  # sampling temperature of improved answers and practice (at 1.0 the 135M core rambles)
    max_grad_norm: float = 1.0
    skip_conflicts: bool = True  # leave out feedback the store flagged as contradicting earlier feedback


@dataclass
class Example:
    """A prompt and a completion to teacher-force, with a weight (SFT) or an advantage (RL)."""

    prompt_ids: list[int]
    completion_ids: list[int]
    weight: float = 1.0


def batch_logprobs(model, examples: list[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(logprobs_C_L, mask_C_L) of each example's completion; identical prompts are read once."""
    prompts: dict[tuple[int, ...], int] = {}
    index = [prompts.setdefault(tuple(e.prompt_ids), len(prompts)) for e in examples]
    return completion_logprobs(model, [list(p) for p in prompts], [e.completion_ids for e in examples], index, pad_id)


def sft_loss(logprobs_C_L: torch.Tensor, mask_C_L: torch.Tensor, weights_C: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood per token, averaged within each completion, then (weighted) over completions."""
    nll_C = -(logprobs_C_L * mask_C_L).sum(1) / mask_C_L.sum(1).clamp(min=1)
    if weights_C is None:
        return nll_C.mean()
    return (weights_C * nll_C).sum() / weights_C.sum().clamp(min=1e-9)


def dpo_loss(chosen_C: torch.Tensor, rejected_C: torch.Tensor, ref_chosen_C: torch.Tensor, ref_rejected_C: torch.Tensor,
             beta: float) -> torch.Tensor:
    """Direct preference optimisation on sequence log-probs: -log sigmoid(beta x the margin of
    the policy's log-ratio of chosen over rejected, relative to the reference's)."""
    margin_C = (chosen_C - ref_chosen_C) - (rejected_C - ref_rejected_C)
    return -F.logsigmoid(beta * margin_C).mean()


def apply_update(model, optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float) -> float:
    """One optimiser step on the adapter's trainable parameters; returns the loss value."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
    optimizer.step()
    model.eval()
    return float(loss.detach())


def new_optimizer(model, learning_rate: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate, weight_decay=0.0)
