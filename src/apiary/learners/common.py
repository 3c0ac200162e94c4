"""What every learner shares: the `Learner` protocol, the record of one update, teacher-forced
batches, and the losses.

A learner turns a batch (tasks, feedback, or failed episodes) into one adapter update and says
what it used and made: `LearnStep.feedback_ids` (the feedback it learned from) and
`LearnStep.episodes` (new attempts it wrote: rollouts, improved answers, practice). The training
loop stores both and links them to the next adapter version, so provenance needs no help from
the learner beyond telling the truth here.

Every learner is built the same way, `Learner(model, tokenizer, job, config, stop_ids, generator)`,
from its own config dataclass, which holds its learning rate and only its own settings.

The learners of a run share one adapter but not one optimizer: each learner owns an AdamW over the
adapter's parameters at its own learning rate. A learner's gradients so reach only its own moment
estimates, and a learner at learning rate 0 leaves the adapter exactly as it was, which a single
optimizer with the rate switched per learner could not promise (its momentum would carry one
learner's gradients into the next learner's step). Checkpoints save each learner's optimizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from apiary.jobs.base import Job
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


class LearnerConfig(Protocol):
    """What every learner's config has: its own learning rate and gradient clipping."""

    learning_rate: float
    max_grad_norm: float


@runtime_checkable
class Learner(Protocol):
    """One learning algorithm in a run. Built as `Learner(model, tokenizer, job, config, stop_ids, generator)`;
    `learn` makes one update of the shared adapter from a batch (tasks, feedback items, or failed episodes)
    with the learner's own `optimizer`."""

    name: str
    config: LearnerConfig
    optimizer: torch.optim.Optimizer

    def learn(self, batch: list) -> LearnStep: ...


def check_settings(learner: str, learning_rate: float, **counts: int) -> None:
    """A clear error for settings no learner can use: a negative learning rate, a count below 1."""
    if not (math.isfinite(learning_rate) and learning_rate >= 0):
        raise ValueError(f"{learner}: the learning rate must be a number >= 0, not {learning_rate}")
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{learner}: {name} must be at least 1, not {value}")


def check_nonnegative(learner: str, **values: float) -> None:
    """A clear error for a setting that must be a finite number >= 0 (a temperature, a weight) and is not."""
    for name, value in values.items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{learner}: {name} must be a number >= 0, not {value}")


def refuse_multi_turn(job: Job, learner: str) -> None:
    """Critiques and practice write one reply to one question: a game or tool task is not that."""
    if job.multi_turn:
        raise ValueError(f"learner {learner} writes single replies and cannot learn the multi-turn job {job.name}; "
                         "use rl (or feedback on its stored episodes)")


@dataclass
class FeedbackConfig:
    """What every learner from people's feedback has; each one's config (learners.corrections, ...) adds its own."""

    learning_rate: float = 1e-3
    batch_size: int = 16  # feedback items per update
    epochs: int = 3  # how many times each piece of feedback is learned from in one run
    max_grad_norm: float = 1.0
    skip_conflicts: bool = True  # leave out feedback the store flagged as contradicting earlier feedback
    skip_flagged: bool = True  # leave out feedback of givers flagged as far less reliable than the others (evals.givers)

    def __post_init__(self):
        check_settings(type(self).__name__, self.learning_rate, batch_size=self.batch_size, epochs=self.epochs)


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


def reverse_kl(student_N_V: torch.Tensor, teacher_N_V: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(student || teacher) = sum_v p_s(v) (log p_s(v) - log p_t(v)), from logits;
    gradients reach the student only through p_s. The term through log p_s is left out: it is
    sum_v p_s(v) d log p_s(v) = d sum_v p_s(v) = 0, exactly in theory but not in float arithmetic, where
    its rounding leftovers would move a student that already matches its teacher (Adam scales them up)."""
    log_s = torch.log_softmax(student_N_V.float(), dim=-1)
    log_t = torch.log_softmax(teacher_N_V.float(), dim=-1)
    return (log_s.exp() * (log_s.detach() - log_t)).sum(-1).mean()


def forward_kl(student_N_V: torch.Tensor, teacher_N_V: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(teacher || student) = sum_v p_t(v) (log p_t(v) - log p_s(v)), from logits: a
    cross-entropy toward the teacher's whole next-token distribution; gradients reach the student only."""
    log_s = torch.log_softmax(student_N_V.float(), dim=-1)
    log_t = torch.log_softmax(teacher_N_V.detach().float(), dim=-1)
    return (log_t.exp() * (log_t - log_s)).sum(-1).mean()


def apply_update(model, optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float,
                 also=None) -> float:
    """One optimiser step on the adapter's trainable parameters; returns the loss value. `also`: a callable that
    adds more gradients (an anchor's) before they are clipped together."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if also is not None:
        also()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
    optimizer.step()
    model.eval()
    return float(loss.detach())


def new_optimizer(model, learning_rate: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate, weight_decay=0.0)
