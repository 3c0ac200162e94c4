"""Learning from text by on-policy self-distillation from context: corrections and critiques alike.

The teacher is the worker itself (its current adapter, no gradient) with the feedback in its
context: for a correction, the question followed by the corrected answer as a hint; for a critique,
the worker's own earlier answer and the critique (learners.critiques). The student is the same
worker without that context, on the episode's own prompt. The student samples its own replies
(on-policy), and on every token it sampled it is moved toward the teacher's next-token distribution by
the exact reverse KL, KL(student || teacher), summed over the whole vocabulary (the idea of SDFT,
Shenfeld, Damani, Hübotter & Agrawal 2026: a demonstration in context makes the model its own
teacher, and learning on its own samples forgets less than SFT on the demonstration). Unlike the
corrections learner, the demonstration itself is never teacher-forced: the student only learns what
the teacher, shown it, would say where the student actually goes. The student's samples are kept as
episodes (origin "self_distill"), scored where the episode's reference answer is known: they are
what the update trained on.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from apiary.jobs.base import Job, Task
from apiary.learners.common import (FeedbackConfig, FeedbackItem, LearnStep, StepStats, apply_update, check_nonnegative,
                                    check_settings, mean_score, new_optimizer, refuse_multi_turn, reverse_kl)
from apiary.learners.critiques import revision_messages
from apiary.models import adapters
from apiary.models.generate import SamplingParams, generate, prompt_ids
from apiary.models.logprobs import pair_logits
from apiary.store.records import Episode

# The correction as a hint after the question. SDFT's wording ("This is an example of a good answer: ... Now
# answer with a response of your own.") made the 135M core echo the hint ("This is an example of a good answer:
# 9") on 12 of 12 chain_sum questions, and 12 steps of distilling that teacher took a served worker from 0.20 to
# 0.00 held-out (docs/benchmarks.md). With this hint its greedy reply was right, in its own words ("The correct
# answer is 9." / "The answer to the given arithmetic problem is 5"), on 12 of 12; with the correction in the
# system prompt it echoed that instead, on 12 of 12.
DEMONSTRATION = "{question}\nThe correct result is {correction}."


def teacher_messages(item: FeedbackItem) -> list[dict]:
    """The teacher's context: the question with the correction shown as an example (a correction), or the
    worker's own answer followed by the critique (a critique, as the critiques learner asks for a revision)."""
    if item.feedback.kind == "critique":
        return revision_messages(item)
    messages = [dict(m) for m in item.episode.messages]
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    messages[last]["content"] = DEMONSTRATION.format(question=messages[last]["content"], correction=item.feedback.text)
    return messages


@dataclass
class SelfDistillConfig(FeedbackConfig):
    """Settings of self-distillation from context."""

    # 5x below the SFT learners' 1e-3: the teacher is the adapter being trained, so every step moves the
    # target too, and a large step can chase its own shadow (dense self-distillation can collapse,
    # 2607.01763). Measured on 64 served corrections with distil_back's phases (on by default), two seeds:
    # at 2e-4 0.20 -> 0.60 / 0.59 held-out with 17 / 11 of 878 retention items flipped, both released; at
    # 1e-4 without the phases (one run) 0.58 with 51 flipped, refused (docs/benchmarks.md).
    learning_rate: float = 2e-4
    samples: int = 2  # student replies sampled per piece of feedback
    temperature: float = 0.7  # their sampling temperature (at 1.0 the 135M core rambles, far from its greedy replies)
    max_new_tokens: int | None = None  # their length cap (default: the job's max_tokens)

    def __post_init__(self):
        super().__post_init__()
        check_settings("self_distill", self.learning_rate, samples=self.samples,
                       **({} if self.max_new_tokens is None else {"max_new_tokens": self.max_new_tokens}))
        check_nonnegative("self_distill", temperature=self.temperature)


class SelfDistillLearner:
    name = "self_distill"
    kinds = ("correction", "critique")  # the feedback kinds it consumes

    def __init__(self, model, tokenizer, job: Job, config: SelfDistillConfig, stop_ids: list[int],
                 generator: torch.Generator | None = None):
        refuse_multi_turn(job, self.name)
        self.model, self.tokenizer, self.job, self.config = model, tokenizer, job, config
        self.stop_ids, self.generator = stop_ids, generator or torch.Generator().manual_seed(0)
        self.optimizer = new_optimizer(model, config.learning_rate)

    def learn(self, items: list[FeedbackItem]) -> LearnStep:
        started = time.perf_counter()
        students = [prompt_ids(self.tokenizer, it.episode.messages) for it in items]
        samples = self._sample(students)
        generated = time.perf_counter()
        rows = [DistillRow(student, self._teacher_prompt(item), completion)
                for item, student, completions in zip(items, students, samples) for completion in completions if completion]
        stats = StepStats(reward_mean=mean_score([it.episode for it in items]), trained_samples=len(rows),
                          generated_tokens=sum(len(c) for cs in samples for c in cs), trained_tokens=0,
                          generate_seconds=generated - started, train_seconds=0.0)
        if rows:
            self.model.train()
            loss = context_kl(self.model, rows, self.tokenizer.pad_token_id)
            stats.loss = apply_update(self.model, self.optimizer, loss, self.config.max_grad_norm)
            stats.trained_tokens = sum(len(r.completion) for r in rows)
        stats.train_seconds = time.perf_counter() - generated
        return LearnStep(stats=stats, episodes=self._episodes(items, samples), feedback_ids=[it.feedback.id for it in items])

    def _teacher_prompt(self, item: FeedbackItem) -> list[int]:
        return prompt_ids(self.tokenizer, teacher_messages(item))

    def _sample(self, prompts: list[list[int]]) -> list[list[list[int]]]:
        params = SamplingParams(max_new_tokens=self.config.max_new_tokens or self.job.max_tokens,
                                temperature=self.config.temperature)
        return student_samples(self.model, prompts, self.config.samples, params, self.stop_ids, self.tokenizer.pad_token_id,
                               self.generator)

    def _episodes(self, items: list[FeedbackItem], samples: list[list[list[int]]]) -> list[Episode]:
        """The student's samples as episodes of the feedback's task, scored where its reference answer is known."""
        episodes = []
        for item, completions in zip(items, samples):
            for ids in completions:
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                score = None if item.episode.answer is None else self.job.score(Task(question="", answer=item.episode.answer), text)
                episodes.append(Episode(job=item.episode.job, task_id=item.episode.task_id, messages=item.episode.messages,
                                        completion=text, score=score, answer=item.episode.answer))
        return episodes


def student_samples(model, prompts: list[list[int]], k: int, params: SamplingParams, stop_ids: list[int], pad_id: int,
                    generator: torch.Generator) -> list[list[list[int]]]:
    """`k` replies of the student (the adapter as it is now, no context) to each prompt, as token ids, prompt-major."""
    model.eval()
    with torch.no_grad(), adapters.merged(model):
        outputs = generate(model, prompts, k, params, stop_ids, pad_id, generator)
    return [outputs[i * k:(i + 1) * k] for i in range(len(prompts))]


@dataclass
class DistillRow:
    """One student sample with both prompts it is read under: the student's own and the teacher's (with context)."""

    student_prompt: list[int]
    teacher_prompt: list[int]
    completion: list[int]


def context_kl(model, rows: list[DistillRow], pad_id: int, core_teacher: bool = False) -> torch.Tensor:
    """Mean over every sampled token of KL(model on the student's prompt || model on the teacher's prompt),
    over the whole vocabulary; gradients flow through the student's side only. Runs in the caller's grad mode.
    `core_teacher`: the teacher is the worker's core (its adapter disabled: learners.anchor says why that is
    its own core), not the worker itself."""
    with torch.no_grad(), (model.disable_adapter() if core_teacher else nullcontext()):
        teacher_N_V = pair_logits(model, [(r.teacher_prompt, r.completion) for r in rows], pad_id)
    student_N_V = pair_logits(model, [(r.student_prompt, r.completion) for r in rows], pad_id)
    return reverse_kl(student_N_V, teacher_N_V)

