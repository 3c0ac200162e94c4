"""Learning documents by recall: the worker learns, without the document, what the core writes reading it.

Context distillation (learners.context_distill) samples the student's replies and moves the student toward
the teacher only on prefixes the student writes itself; a student that never writes a name it has not
learned gets almost no signal toward it (docs/benchmarks.md, the 10-document run: 0 of 20 recalled). Here
the roles of the samples are swapped. The teacher, the worker's core (its adapter disabled) with the
document above the question, answers each training question `samples` times; an answer is kept when the
question's own answer is in it (practice questions carry one) or, for a question without one (a plain
request about a document), always. The student, the worker without the document, is then moved toward the
teacher on every token of the kept answers by the per-token forward KL, KL(teacher || student), summed over
the vocabulary: the teacher's whole next-token distribution, not only the token it wrote. This is
distillation on the teacher's sequences (the Cartridges recipe: training text written with the document in
context), off the student's policy, so it may forget more than context_distill: measured in
docs/benchmarks.md, not assumed.

The questions are the documents job's training stream, as for context_distill; the kept answers are stored
as episodes (origin "recall", scored where the question has an answer), so the adapter version records
what it was taught.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from apiary.jobs.base import Job, Task
from apiary.jobs.documents import documents_of, open_book
from apiary.learners.anchor import CoreAnchor
from apiary.learners.common import (LearnStep, StepStats, apply_update, check_nonnegative, check_settings, forward_kl,
                                    new_optimizer)
from apiary.learners.self_distill import DistillRow
from apiary.models.generate import SamplingParams, generate
from apiary.models.logprobs import pair_logits
from apiary.models.prompt_format import prompt_ids
from apiary.store.records import Episode


@dataclass
class RecallConfig:
    learning_rate: float = 5e-4  # context_distill's
    batch_size: int = 8  # training questions per update
    samples: int = 2  # the teacher's answers per question
    temperature: float = 0.7
    max_new_tokens: int | None = None  # their length cap (default: the job's max_tokens)
    max_grad_norm: float = 1.0
    # Weight of the reverse KL to the core on general prompts in every update (learners.anchor, as rl's
    # anchor_weight), 0 = off: what the worker learns here is off its own policy, and the anchor is on it.
    anchor_weight: float = 0.0
    anchor_prompts_per_step: int = 8
    anchor_new_tokens: int = 24

    def __post_init__(self):
        check_settings("recall", self.learning_rate, batch_size=self.batch_size, samples=self.samples,
                       anchor_prompts_per_step=self.anchor_prompts_per_step, anchor_new_tokens=self.anchor_new_tokens,
                       **({} if self.max_new_tokens is None else {"max_new_tokens": self.max_new_tokens}))
        check_nonnegative("recall", temperature=self.temperature, anchor_weight=self.anchor_weight)


class RecallLearner:
    name = "recall"

    def __init__(self, model, tokenizer, job: Job, config: RecallConfig, stop_ids: list[int],
                 generator: torch.Generator | None = None):
        self.source = documents_of(job, f"learner {self.name}")
        self.model, self.tokenizer, self.job, self.config = model, tokenizer, job, config
        self.stop_ids, self.generator = stop_ids, generator or torch.Generator().manual_seed(0)
        self.optimizer = new_optimizer(model, config.learning_rate)
        self.anchor = CoreAnchor(tokenizer, stop_ids, config.anchor_weight, config.anchor_prompts_per_step,
                                 config.anchor_new_tokens) if config.anchor_weight > 0 else None

    def prompts(self, task: Task) -> tuple[list[int], list[int]]:
        """The student's prompt (the question alone) and the teacher's (its document above it)."""
        return (prompt_ids(self.tokenizer, self.job.messages(task)),
                prompt_ids(self.tokenizer, self.job.messages(open_book(self.source, task))))

    def teacher_answers(self, tasks: list[Task]) -> list[list[list[int]]]:
        """The core's sampled answers to each question, reading its document (`samples` each)."""
        prompts = [self.prompts(t)[1] for t in tasks]
        params = SamplingParams(max_new_tokens=self.config.max_new_tokens or self.job.max_tokens,
                                temperature=self.config.temperature)
        self.model.eval()
        k = self.config.samples
        with torch.no_grad(), self.model.disable_adapter():
            outputs = generate(self.model, prompts, k, params, self.stop_ids, self.tokenizer.pad_token_id, self.generator)
        return [outputs[i * k:(i + 1) * k] for i in range(len(prompts))]

    def kept(self, task: Task, text: str) -> bool:
        """An answer worth learning: one that holds the question's answer, if the question has one."""
        return bool(text.strip()) and (not task.answer or self.job.score(task, text) > 0)

    def learn(self, tasks: list[Task]) -> LearnStep:
        started = time.perf_counter()
        answers = self.teacher_answers(tasks)
        generated = time.perf_counter()
        rows, episodes, scores = [], [], []
        for task, completions in zip(tasks, answers):
            student, teacher = self.prompts(task)
            for ids in completions:
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                scores += [self.job.score(task, text)] if task.answer else []
                if ids and self.kept(task, text):
                    rows.append(DistillRow(student, teacher, ids))
                    episodes.append(Episode(job=self.job.name, task_id=task.id, messages=self.job.messages(task),
                                            completion=text, score=self.job.score(task, text) if task.answer else None,
                                            answer=task.answer or None, origin=self.name))
        # reward_mean: how often the teacher, reading the document, was right
        stats = StepStats(reward_mean=sum(scores) / len(scores) if scores else float("nan"), trained_samples=len(rows),
                          generated_tokens=sum(len(c) for cs in answers for c in cs), trained_tokens=0,
                          generate_seconds=generated - started, train_seconds=0.0, extra={"answers_kept": len(rows)})
        if rows:
            self.model.train()
            anchored = []
            also = (lambda: anchored.append(self.anchor.backward(self.model, self.generator))) if self.anchor else None
            stats.loss = apply_update(self.model, self.optimizer, self.loss(rows), self.config.max_grad_norm, also)
            stats.extra |= {"anchor_kl": anchored[0].kl} if anchored else {}
            stats.trained_tokens = sum(len(r.completion) for r in rows)
        stats.train_seconds = time.perf_counter() - generated
        return LearnStep(stats=stats, episodes=episodes)

    def loss(self, rows: list[DistillRow]) -> torch.Tensor:
        """Mean over the teacher's tokens of KL(core reading the document || worker without it), in the caller's grad mode."""
        pad = self.tokenizer.pad_token_id
        with torch.no_grad(), self.model.disable_adapter():
            teacher_N_V = pair_logits(self.model, [(r.teacher_prompt, r.completion) for r in rows], pad)
        student_N_V = pair_logits(self.model, [(r.student_prompt, r.completion) for r in rows], pad)
        return forward_kl(student_N_V, teacher_N_V)
