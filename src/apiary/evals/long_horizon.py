"""Held-out evaluation of multi-turn jobs, and the long-horizon metrics of a set of episodes.

Every held-out task is played once to the end, greedily unless the job sets `eval_temperature`
(TextArena games do: a greedy player repeats the same guess or move). The held-out score of a multi-turn job
is its success rate (episodes that reached the goal); the details add the mean episode score,
the average turns to success, the invalid-move rate (invalid moves / all of the worker's turns)
and the mean score by episode length.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from apiary.jobs.base import Job
from apiary.learners.play import Transcript, play
from apiary.models import adapters
from apiary.models.generate import SamplingParams
from apiary.store.records import EvalResult

EVAL_SEED = 0
LENGTH_BINS = ((1, 2), (3, 5), (6, 10), (11, 10_000))  # worker turns, inclusive


def metrics(transcripts: list[Transcript]) -> dict:
    """Success rate, mean score, average turns (to success, and overall), invalid-move rate, score by length."""
    n = max(1, len(transcripts))
    won = [t for t in transcripts if t.success]
    turns = sum(t.turns for t in transcripts)
    by_length = defaultdict(list)
    for t in transcripts:
        low, high = next(b for b in LENGTH_BINS if b[0] <= t.turns <= b[1])
        by_length[f"{low}-{high}" if high < 10_000 else f"{low}+"].append(t.score)
    return {
        "episodes": len(transcripts),
        "success_rate": len(won) / n,
        "mean_score": sum(t.score for t in transcripts) / n,
        "turns_to_success": sum(t.turns for t in won) / len(won) if won else None,
        "mean_turns": turns / n,
        "invalid_rate": sum(t.invalid for t in transcripts) / max(1, turns),
        "cut_off": sum(not t.done for t in transcripts),
        "score_by_length": {k: {"episodes": len(v), "mean_score": sum(v) / len(v)} for k, v in sorted(by_length.items())},
    }


def evaluate_turns(model, tokenizer, job: Job, stop_ids: list[int], batch_size: int = 64, worker: str | None = None,
                   adapter_version: int = 0, core_version: int = 0) -> EvalResult:
    """Play every held-out task once at the job's eval temperature (greedy by default; a sampled eval uses
    a generator seeded with EVAL_SEED, so it is reproducible); the score is the success rate."""
    tasks = job.source.heldout()
    was_training = model.training
    model.eval()
    transcripts: list[Transcript] = []
    params = SamplingParams(max_new_tokens=job.max_tokens, temperature=job.eval_temperature)
    generator = torch.Generator().manual_seed(EVAL_SEED)
    for start in range(0, len(tasks), batch_size):
        with adapters.merged(model):
            transcripts += play(model, tokenizer, job, tasks[start:start + batch_size], 1, params, stop_ids, generator)
    model.train(was_training)
    summary = metrics(transcripts)
    return EvalResult(
        worker=worker, adapter_version=adapter_version, core_version=core_version, job=job.name, n=len(tasks),
        score=summary["success_rate"],
        details={"task_ids": [t.task.id for t in transcripts], "scores": [float(t.success) for t in transcripts],
                 "episode_scores": [t.score for t in transcripts], "completions": [t.completion for t in transcripts],
                 "turns": [t.turns for t in transcripts], "invalid": [t.invalid for t in transcripts],
                 "long_horizon": summary},
    )
