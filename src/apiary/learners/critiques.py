"""Learning from critiques: self-distillation, so a lesson given in words moves into the weights.

For each critique, the worker is shown its own answer and the critique and writes improved
answers (`tries` samples). Where the episode's reference answer is known, an improvement counts
only if the job's scorer rates it above the original answer (verified); otherwise the first
answer that differs from the original is taken; among equally good revisions the shortest is taken. The worker *without* the critique in its context
is then fine-tuned toward the improvement (SFT on verified improvements), so next time it needs
no critique. Every scored revision is kept as an episode, so the store shows what the worker
wrote when criticised.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from apiary.jobs.base import Job, Task
from apiary.learners.common import (Example, FeedbackConfig, FeedbackItem, LearnStep, StepStats, check_settings,
                                    new_optimizer, refuse_multi_turn)
from apiary.learners.corrections import supervised_update
from apiary.models import adapters
from apiary.models.generate import SamplingParams, generate, prompt_ids, reply_ids
from apiary.store.records import Episode

REVISE = "Feedback on your answer: {critique}\nWrite an improved answer to my request, following the feedback. Reply with the answer only."


def revision_messages(item: FeedbackItem) -> list[dict]:
    """The episode, the worker's answer, and the critique as the next user turn."""
    return item.episode.messages + [{"role": "assistant", "content": item.episode.completion},
                                    {"role": "user", "content": REVISE.format(critique=item.feedback.text)}]


@dataclass
class CritiquesConfig(FeedbackConfig):
    """Settings of learning from critiques."""

    tries: int = 4  # improved answers sampled per critique
    temperature: float = 0.7  # their sampling temperature (at 1.0 the 135M core rambles)

    def __post_init__(self):
        super().__post_init__()
        check_settings("critiques", self.learning_rate, tries=self.tries)


class CritiqueLearner:
    name = "critiques"
    kind = "critique"

    def __init__(self, model, tokenizer, job: Job, config: CritiquesConfig, stop_ids: list[int],
                 generator: torch.Generator | None = None):
        refuse_multi_turn(job, self.name)
        self.model, self.tokenizer, self.job, self.config = model, tokenizer, job, config
        self.stop_ids, self.generator = stop_ids, generator or torch.Generator().manual_seed(0)
        self.optimizer = new_optimizer(model, config.learning_rate)

    def learn(self, items: list[FeedbackItem]) -> LearnStep:
        started = time.perf_counter()
        revisions = self._revise(items)
        generated = time.perf_counter()
        episodes, examples = [], []
        for item, texts in zip(items, revisions):
            scores = [self._score(item, t) for t in texts]
            if item.episode.answer is not None:
                episodes += [Episode(job=item.episode.job, task_id=item.episode.task_id, messages=revision_messages(item),
                                     completion=t, score=s, answer=item.episode.answer) for t, s in zip(texts, scores)]
            better = _improvement(item, texts, scores)
            if better is not None:
                examples.append(Example(prompt_ids(self.tokenizer, item.episode.messages), reply_ids(self.tokenizer, better)))
        stats = StepStats(reward_mean=sum(e.score for e in episodes) / max(1, len(episodes)), trained_samples=len(examples),
                          generated_tokens=sum(len(self.tokenizer(t)["input_ids"]) for ts in revisions for t in ts),
                          trained_tokens=0, generate_seconds=generated - started, train_seconds=0.0,
                          extra={"improved": len(examples), "critiques": len(items)})
        if examples:
            stats.loss, stats.trained_tokens = supervised_update(self.model, self.optimizer, examples,
                                                                 self.tokenizer.pad_token_id, self.config.max_grad_norm)
        stats.train_seconds = time.perf_counter() - generated
        return LearnStep(stats=stats, episodes=episodes, feedback_ids=[it.feedback.id for it in items])

    def _revise(self, items: list[FeedbackItem]) -> list[list[str]]:
        prompts = [prompt_ids(self.tokenizer, revision_messages(it)) for it in items]
        params = SamplingParams(max_new_tokens=self.job.max_tokens, temperature=self.config.temperature)
        self.model.eval()
        with torch.no_grad(), adapters.merged(self.model):
            outputs = generate(self.model, prompts, self.config.tries, params, self.stop_ids,
                               self.tokenizer.pad_token_id, self.generator)
        texts = [self.tokenizer.decode(ids, skip_special_tokens=True) for ids in outputs]
        return [texts[i * self.config.tries:(i + 1) * self.config.tries] for i in range(len(items))]

    def _score(self, item: FeedbackItem, text: str) -> float | None:
        if item.episode.answer is None:
            return None
        return self.job.score(Task(question="", answer=item.episode.answer), text)


def _improvement(item: FeedbackItem, texts: list[str], scores: list[float | None]) -> str | None:
    """The best verified improvement over the original answer, shortest first among equals (a long
    revision that happens to contain the right value teaches rambling); unverifiable: the first that differs."""
    if item.episode.answer is not None:
        best = min(range(len(texts)), key=lambda i: (-scores[i], len(texts[i])), default=None)
        return texts[best] if best is not None and scores[best] > item.episode.score else None
    original = item.episode.completion.strip()
    return next((t for t in texts if t.strip() and t.strip() != original), None)
