"""Learning documents by continued pretraining on their raw text: the naive baseline.

Each update teacher-forces a few whole documents (next-token negative log-likelihood on their text, no
question, no chat format), cycling through the folder. Each document trained on is kept as an episode
(origin "doc_pretrain": the text as its only message, no completion, no score), so the adapter version
records what it read and the gate's contamination check sees the text. This is how a model is usually taught a corpus,
and what context distillation (learners.context_distill) is measured against: a model that has read a
sentence has not necessarily learned to answer a question about it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import torch

from apiary.jobs.base import Job
from apiary.jobs.documents import Document, documents_of
from apiary.learners.common import (Example, LearnStep, StepStats, apply_update, batch_logprobs, check_settings,
                                    new_optimizer, sft_loss)
from apiary.store.records import Episode


@dataclass
class DocPretrainConfig:
    learning_rate: float = 1e-3  # the SFT learners' (corrections)
    batch_size: int = 4  # documents per update
    max_tokens: int = 1024  # a longer document is cut here
    max_grad_norm: float = 1.0

    def __post_init__(self):
        check_settings("doc_pretrain", self.learning_rate, batch_size=self.batch_size, max_tokens=self.max_tokens)


class DocPretrainLearner:
    name = "doc_pretrain"

    def __init__(self, model, tokenizer, job: Job, config: DocPretrainConfig, stop_ids: list[int],
                 generator: torch.Generator | None = None):
        documents_of(job, f"learner {self.name}")
        self.model, self.tokenizer, self.job, self.config = model, tokenizer, job, config
        self.optimizer = new_optimizer(model, config.learning_rate)

    def examples(self, documents: list[Document]) -> list[Example]:
        """Each document's tokens after a start token (the tokenizer's BOS, else its EOS as a separator)."""
        start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
        return [Example([start], self.tokenizer(d.text, add_special_tokens=False).input_ids[:self.config.max_tokens])
                for d in documents]

    def loss(self, documents: list[Document]) -> torch.Tensor:
        """Mean per-token negative log-likelihood of the documents' text (in the caller's grad mode)."""
        logprobs_C_L, mask_C_L = batch_logprobs(self.model, self.examples(documents), self.tokenizer.pad_token_id)
        return sft_loss(logprobs_C_L, mask_C_L)

    def learn(self, documents: list[Document]) -> LearnStep:
        started = time.perf_counter()
        self.model.train()
        loss = self.loss(documents)
        stats = StepStats(reward_mean=float("nan"), trained_samples=len(documents), generated_tokens=0,
                          trained_tokens=sum(len(e.completion_ids) for e in self.examples(documents)),
                          generate_seconds=0.0, train_seconds=0.0)
        stats.loss = apply_update(self.model, self.optimizer, loss, self.config.max_grad_norm)
        stats.train_seconds = time.perf_counter() - started
        read = [Episode(job=self.job.name, task_id=hashlib.sha1(d.name.encode()).hexdigest()[:16],
                        messages=[{"role": "user", "content": d.text}], completion="", origin=self.name,
                        info={"document": d.name}) for d in documents]
        return LearnStep(stats=stats, episodes=read)
