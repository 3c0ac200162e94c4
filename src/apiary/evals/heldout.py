"""Held-out scoring of a model (the core, or the core plus a worker's adapter) on a job.

Every held-out task is played once through the same player as training (learners.play): one reply
for a single-turn job, a whole episode for a game or tool task. Greedy unless the job sets
`eval_temperature` (TextArena games do: a greedy player repeats the same guess or move); a sampled
eval uses a generator seeded with EVAL_SEED, so it is reproducible.
"""

from __future__ import annotations

import torch

from apiary.evals.long_horizon import episode_details
from apiary.jobs.base import Job
from apiary.learners.play import play
from apiary.models import adapters
from apiary.models.generate import SamplingParams
from apiary.store.records import EvalResult

EVAL_SEED = 0


def evaluate(model, tokenizer, job: Job, stop_ids: list[int], batch_size: int = 64,
             worker: str | None = None, adapter_version: int = 0, core_version: int = 0) -> EvalResult:
    """Score every held-out task once. An episode's score is the job's held-out scorer on a single reply, and
    success (1 or 0) for a game or tool task; details keep per-task scores and replies, and a multi-turn
    job's also the long-horizon metrics (evals.long_horizon)."""
    tasks = job.source.heldout()
    was_training = model.training
    model.eval()
    params = SamplingParams(max_new_tokens=job.max_tokens, temperature=job.eval_temperature)
    generator = torch.Generator().manual_seed(EVAL_SEED)
    transcripts = []
    for start in range(0, len(tasks), batch_size):
        with adapters.merged(model):
            transcripts += play(model, tokenizer, job, tasks[start:start + batch_size], 1, params, stop_ids, generator)
    model.train(was_training)
    scores = [t.heldout_score for t in transcripts]
    details = {"task_ids": [t.task.id for t in transcripts], "scores": scores, "completions": [t.completion for t in transcripts]}
    if job.multi_turn:
        details |= episode_details(transcripts)
    return EvalResult(worker=worker, adapter_version=adapter_version, core_version=core_version, job=job.name, n=len(tasks),
                      score=sum(scores) / max(1, len(scores)), details=details)
