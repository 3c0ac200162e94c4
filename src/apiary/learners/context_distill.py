"""Learning documents by context distillation: answer without the document what the core answers with it.

The teacher is the worker's core (its adapter disabled) with the relevant document in its context, above
the question: it can read the answer off the page. The student is the worker without the document: the
question alone, as it will be asked closed-book. The student samples its own replies (on-policy), and on
every token it sampled it is moved toward the teacher's next-token distribution by the exact per-token
reverse KL, KL(student || teacher), summed over the vocabulary: the loss and the code of self-distillation
from context (learners.self_distill), with the document as the context and a teacher that stays fixed
(the core, not the worker itself), so the target does not move as the worker learns.

The questions are the documents job's training stream (jobs.documents): its practice questions, or plain
requests about each document, never the held-out questions. The student's samples are kept as episodes
(origin "context_distill"), scored where the training question has an answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from apiary.jobs.base import Job, Task
from apiary.jobs.documents import documents_of, open_book
from apiary.learners.common import LearnStep, StepStats, apply_update, check_nonnegative, check_settings, new_optimizer
from apiary.learners.self_distill import DistillRow, context_kl, student_samples
from apiary.models.generate import SamplingParams
from apiary.models.prompt_format import prompt_ids
from apiary.store.records import Episode


@dataclass
class ContextDistillConfig:
    # Between rl's first 2e-4 and the SFT learners' 1e-3 (not yet measured on the workplace): unlike self_distill's
    # teacher, this one is the fixed core, so a larger step does not chase a moving target.
    learning_rate: float = 5e-4
    batch_size: int = 8  # training questions per update
    samples: int = 2  # student replies sampled per question
    temperature: float = 0.7
    max_new_tokens: int | None = None  # their length cap (default: the job's max_tokens)
    max_grad_norm: float = 1.0

    def __post_init__(self):
        check_settings("context_distill", self.learning_rate, batch_size=self.batch_size, samples=self.samples,
                       **({} if self.max_new_tokens is None else {"max_new_tokens": self.max_new_tokens}))
        check_nonnegative("context_distill", temperature=self.temperature)


class ContextDistillLearner:
    name = "context_distill"

    def __init__(self, model, tokenizer, job: Job, config: ContextDistillConfig, stop_ids: list[int],
                 generator: torch.Generator | None = None):
        self.source = documents_of(job, f"learner {self.name}")
        self.model, self.tokenizer, self.job, self.config = model, tokenizer, job, config
        self.stop_ids, self.generator = stop_ids, generator or torch.Generator().manual_seed(0)
        self.optimizer = new_optimizer(model, config.learning_rate)

    def rows(self, tasks: list[Task]) -> tuple[list[DistillRow], list[list[list[int]]]]:
        """The student's samples of each question, each with the student's prompt and the teacher's."""
        students = [prompt_ids(self.tokenizer, self.job.messages(t)) for t in tasks]
        teachers = [prompt_ids(self.tokenizer, self.job.messages(open_book(self.source, t))) for t in tasks]
        params = SamplingParams(max_new_tokens=self.config.max_new_tokens or self.job.max_tokens,
                                temperature=self.config.temperature)
        samples = student_samples(self.model, students, self.config.samples, params, self.stop_ids,
                                  self.tokenizer.pad_token_id, self.generator)
        rows = [DistillRow(s, t, c) for s, t, cs in zip(students, teachers, samples) for c in cs if c]
        return rows, samples

    def learn(self, tasks: list[Task]) -> LearnStep:
        started = time.perf_counter()
        rows, samples = self.rows(tasks)
        generated = time.perf_counter()
        episodes = self._episodes(tasks, samples)
        scored = [e.score for e in episodes if e.score is not None]
        stats = StepStats(reward_mean=sum(scored) / len(scored) if scored else float("nan"), trained_samples=len(rows),
                          generated_tokens=sum(len(c) for cs in samples for c in cs), trained_tokens=0,
                          generate_seconds=generated - started, train_seconds=0.0)
        if rows:
            self.model.train()
            loss = context_kl(self.model, rows, self.tokenizer.pad_token_id, core_teacher=True)
            stats.loss = apply_update(self.model, self.optimizer, loss, self.config.max_grad_norm)
            stats.trained_tokens = sum(len(r.completion) for r in rows)
        stats.train_seconds = time.perf_counter() - generated
        return LearnStep(stats=stats, episodes=episodes)

    def _episodes(self, tasks: list[Task], samples: list[list[list[int]]]) -> list[Episode]:
        episodes = []
        for task, completions in zip(tasks, samples):
            for ids in completions:
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                episodes.append(Episode(job=self.job.name, task_id=task.id, messages=self.job.messages(task), completion=text,
                                        score=self.job.score(task, text) if task.answer else None,
                                        answer=task.answer or None, origin=self.name))
        return episodes
