"""Practice: the worker writes problems like the ones it recently failed, solves them, and learns
only from solutions the job can verify.

1. write: shown a task it failed, the worker writes one new task of the same kind (sampled);
2. check: the job's own check (`Job.solve`) computes the new task's answer; tasks it cannot read,
   copies of the failed task, and anything that matches a held-out question are dropped, so
   practice never trains on the evaluation;
3. solve: the worker samples `tries` solutions per task, scored by the job's scorer;
4. learn: SFT on the first verified solution of each task (rejection sampling, as in STaR).
Every practice attempt is stored as an episode with the computed answer.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import torch

from apiary.jobs.base import Job, Task
from apiary.learners.common import Example, LearnStep, StepStats, check_settings, new_optimizer, refuse_multi_turn
from apiary.learners.corrections import supervised_update
from apiary.models import adapters
from apiary.models.generate import SamplingParams, generate, prompt_ids, reply_ids
from apiary.store.records import Episode

WRITE = ("Here is a practice problem:\n{question}\n\nWrite one new problem of the same kind with different numbers. "
         "Reply with the new problem only.")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def _skeleton(text: str) -> str:
    """Numbers and operators only: "What is 4 - 1?" and "...problem: 4 - 1 =" are the same problem."""
    return re.sub(r"[^\d+\-*/]", "", text)


@dataclass
class PracticeConfig:
    """Settings of practice."""

    learning_rate: float = 1e-3
    batch_size: int = 16  # failed episodes (so new tasks at most) per update
    tries: int = 4  # solutions sampled per new task
    temperature: float = 0.7  # sampling temperature of new tasks and solutions (at 1.0 the 135M core rambles)
    max_grad_norm: float = 1.0

    def __post_init__(self):
        check_settings("practice", self.learning_rate, batch_size=self.batch_size, tries=self.tries)


class PracticeLearner:
    name = "practice"

    def __init__(self, model, tokenizer, job: Job, config: PracticeConfig, stop_ids: list[int],
                 generator: torch.Generator | None = None):
        refuse_multi_turn(job, self.name)
        if job.solve is None:
            raise ValueError(f"job {job.name!r} has no check for new questions (Job.solve, or check = ... in its job "
                             "file), so practice could not verify anything")
        self.model, self.tokenizer, self.job, self.config = model, tokenizer, job, config
        self.stop_ids, self.generator = stop_ids, generator or torch.Generator().manual_seed(0)
        self.optimizer = new_optimizer(model, config.learning_rate)
        self.heldout = [_squash(t.question) for t in job.source.heldout()]
        self.heldout_skeletons = {_skeleton(t.question) for t in job.source.heldout()} - {""}

    def learn(self, failures: list[Episode]) -> LearnStep:
        started = time.perf_counter()
        tasks = self._write(failures)
        solutions = self._sample([self.job.messages(t) for t in tasks], self.config.tries) if tasks else []
        generated = time.perf_counter()
        episodes, examples = [], []
        for i, task in enumerate(tasks):
            texts = solutions[i * self.config.tries:(i + 1) * self.config.tries]
            scores = [self.job.score(task, t) for t in texts]
            episodes += [Episode(job=self.job.name, task_id=task.id, messages=self.job.messages(task), completion=t,
                                 score=s, answer=task.answer) for t, s in zip(texts, scores)]
            verified = next((t for t, s in zip(texts, scores) if s >= 1.0), None)
            if verified is not None:
                examples.append(Example(prompt_ids(self.tokenizer, self.job.messages(task)), reply_ids(self.tokenizer, verified)))
        stats = StepStats(reward_mean=sum(e.score for e in episodes) / max(1, len(episodes)), trained_samples=len(examples),
                          generated_tokens=0, trained_tokens=0, generate_seconds=generated - started, train_seconds=0.0,
                          extra={"failures": len(failures), "tasks": len(tasks), "verified": len(examples)})
        if examples:
            stats.loss, stats.trained_tokens = supervised_update(self.model, self.optimizer, examples,
                                                                 self.tokenizer.pad_token_id, self.config.max_grad_norm)
        stats.train_seconds = time.perf_counter() - generated
        return LearnStep(stats=stats, episodes=episodes)

    def _write(self, failures: list[Episode]) -> list[Task]:
        """New tasks like the failed ones, each with an answer the job computed; unusable ones dropped."""
        originals = [self._question(e) for e in failures]
        written = self._sample([[{"role": "user", "content": WRITE.format(question=q)}] for q in originals], 1)
        tasks, seen = [], set()
        for original, text in zip(originals, written):
            question = text.strip()
            key = _squash(question)
            if not key or key == _squash(original) or key in seen or self._in_heldout(question):
                continue
            answer = self.job.solve(question)
            if answer is not None:
                seen.add(key)
                tasks.append(Task(question=question, answer=answer, metadata={"practice_of": original}))
        return tasks

    def _in_heldout(self, question: str) -> bool:
        key = _squash(question)
        return any(key in h for h in self.heldout) or _skeleton(question) in self.heldout_skeletons

    def _question(self, episode: Episode) -> str:
        """The failed task's question: the last user turn without the job's instruction."""
        content = episode.messages[-1]["content"]
        return content.removesuffix(self.job.instruction).strip() if self.job.instruction else content

    def _sample(self, chats: list[list[dict]], samples: int) -> list[str]:
        prompts = [prompt_ids(self.tokenizer, chat) for chat in chats]
        params = SamplingParams(max_new_tokens=max(self.job.max_tokens, 48), temperature=self.config.temperature)
        self.model.eval()
        with torch.no_grad(), adapters.merged(self.model):
            outputs = generate(self.model, prompts, samples, params, self.stop_ids, self.tokenizer.pad_token_id, self.generator)
        return [self.tokenizer.decode(ids, skip_special_tokens=True) for ids in outputs]
