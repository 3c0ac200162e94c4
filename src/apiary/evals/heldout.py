"""Greedy held-out scoring of a model (the core, or the core plus a worker's adapter) on a job."""

from __future__ import annotations

from apiary.evals.long_horizon import evaluate_turns
from apiary.jobs.base import Job
from apiary.models import adapters
from apiary.models.generate import SamplingParams, generate, prompt_ids
from apiary.store.records import EvalResult


def evaluate(model, tokenizer, job: Job, stop_ids: list[int], batch_size: int = 64,
             worker: str | None = None, adapter_version: int = 0, core_version: int = 0) -> EvalResult:
    """Score every held-out task once with greedy decoding; details keep per-task scores.
    A multi-turn job plays each held-out episode to the end instead (evals.long_horizon)."""
    if job.multi_turn:
        return evaluate_turns(model, tokenizer, job, stop_ids, batch_size, worker, adapter_version, core_version)
    tasks = job.source.heldout()
    was_training = model.training
    model.eval()
    scores, completions = [], []
    for start in range(0, len(tasks), batch_size):
        chunk = tasks[start:start + batch_size]
        prompts = [prompt_ids(tokenizer, job.messages(t)) for t in chunk]
        with adapters.merged(model):
            outputs = generate(model, prompts, 1, SamplingParams(max_new_tokens=job.max_tokens, temperature=0.0),
                               stop_ids, tokenizer.pad_token_id)
        for task, ids in zip(chunk, outputs):
            text = tokenizer.decode(ids, skip_special_tokens=True)
            completions.append(text)
            scores.append(job.heldout_score(task, text))
    model.train(was_training)
    return EvalResult(
        worker=worker, adapter_version=adapter_version, core_version=core_version, job=job.name, n=len(tasks),
        score=sum(scores) / max(1, len(scores)),
        details={"task_ids": [t.id for t in tasks], "scores": scores, "completions": completions},
    )
