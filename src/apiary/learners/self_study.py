"""Self-study: the worker writes its own questions about each document, then learns them by context distillation.

For each document of the batch the worker (its adapter as it is now) reads the document and writes one
question about it; the core, reading the document, answers it (greedy). A question is kept when the
document supports the answer (every word of three letters or more of the answer's first line is in the
document), it is a question (it ends with "?"), and it is not one of the job's held-out questions word for
word (those are never trained on). The kept questions are then learned exactly as context_distill learns
the job's practice questions (learners.context_distill): the worker without the document is moved toward
the core with it, on its own samples. The idea of Cartridges (Eyuboglu et al. 2025) and SEAL (Zweiger et
al. 2025): a model's own questions about a text are training material for the text.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import torch

from apiary.jobs.base import Job, Task
from apiary.jobs.documents import Document, documents_of, open_book
from apiary.jobs.scoring import first_line
from apiary.learners.common import LearnStep, StepStats, check_nonnegative, check_settings
from apiary.learners.context_distill import ContextDistillConfig, ContextDistillLearner
from apiary.learners.self_distill import student_samples
from apiary.models.generate import SamplingParams, generate
from apiary.models.prompt_format import prompt_ids

ASK = "{document}\n\nWrite one short question that the document above answers. Reply with the question only."
WORD = re.compile(r"[\w-]{3,}")


@dataclass
class SelfStudyConfig:
    learning_rate: float = 5e-4  # context_distill's
    batch_size: int = 4  # documents per update
    questions: int = 2  # questions written per document
    temperature: float = 1.0  # when writing questions (varied questions, not the same one twice)
    samples: int = 2  # student replies per kept question, as in context_distill
    max_grad_norm: float = 1.0

    def __post_init__(self):
        check_settings("self_study", self.learning_rate, batch_size=self.batch_size, questions=self.questions,
                       samples=self.samples)
        check_nonnegative("self_study", temperature=self.temperature)


def supported(question: str, answer: str, document: str, asked: set[str]) -> bool:
    """A written question worth learning: a question, not a held-out one, whose answer the document supports."""
    words = WORD.findall(first_line(answer).casefold())
    return (question.endswith("?") and question not in asked and bool(words)
            and all(w in document.casefold() for w in words))


class SelfStudyLearner:
    name = "self_study"

    def __init__(self, model, tokenizer, job: Job, config: SelfStudyConfig, stop_ids: list[int],
                 generator: torch.Generator | None = None):
        self.source = documents_of(job, f"learner {self.name}")
        self.model, self.tokenizer, self.job, self.config, self.stop_ids = model, tokenizer, job, config, stop_ids
        self.generator = generator or torch.Generator().manual_seed(0)
        self.distill = ContextDistillLearner(model, tokenizer, job, ContextDistillConfig(
            learning_rate=config.learning_rate, samples=config.samples, max_grad_norm=config.max_grad_norm),
            stop_ids, self.generator)
        self.optimizer = self.distill.optimizer
        self.asked = {t.question for t in self.source.heldout()}

    def write_questions(self, documents: list[Document]) -> list[Task]:
        """The worker's questions about each document, answered by the core reading it; only the supported ones."""
        prompts = [prompt_ids(self.tokenizer, [{"role": "user", "content": ASK.format(document=d.text)}]) for d in documents]
        params = SamplingParams(max_new_tokens=40, temperature=self.config.temperature)
        written = student_samples(self.model, prompts, self.config.questions, params, self.stop_ids,
                                  self.tokenizer.pad_token_id, self.generator)
        pairs = [(d, first_line(self.tokenizer.decode(ids, skip_special_tokens=True)))
                 for d, ids_k in zip(documents, written) for ids in ids_k]
        pairs = [(d, q) for d, q in pairs if q]
        if not pairs:
            return []
        tasks = [Task(question=q, answer="", metadata={"doc": d.name}) for d, q in pairs]
        answers = self._core_answers(tasks)
        return [Task(question=t.question, answer=first_line(a).rstrip("."), metadata=t.metadata)
                for (d, _), t, a in zip(pairs, tasks, answers) if supported(t.question, a, d.text, self.asked)]

    def _core_answers(self, tasks: list[Task]) -> list[str]:
        """The core's greedy answer to each question with its document above it (the teacher's context)."""
        prompts = [prompt_ids(self.tokenizer, self.job.messages(open_book(self.source, t))) for t in tasks]
        params = SamplingParams(max_new_tokens=self.job.max_tokens, temperature=0.0)
        self.model.eval()
        with torch.no_grad(), self.model.disable_adapter():
            answers = generate(self.model, prompts, 1, params, self.stop_ids, self.tokenizer.pad_token_id, self.generator)
        return [self.tokenizer.decode(a, skip_special_tokens=True) for a in answers]

    def learn(self, documents: list[Document]) -> LearnStep:
        started = time.perf_counter()
        tasks = self.write_questions(documents)
        writing = time.perf_counter() - started  # sampling too: a --minutes budget counts it
        if not tasks:
            return LearnStep(stats=StepStats(reward_mean=float("nan"), trained_samples=0, generated_tokens=0,
                                             trained_tokens=0, generate_seconds=writing, train_seconds=0.0,
                                             extra={"questions_kept": 0}))
        step = self.distill.learn(tasks)
        step.stats.generate_seconds += writing
        for episode in step.episodes:
            episode.origin = self.name
        step.stats.extra["questions_kept"] = len(tasks)
        return step
