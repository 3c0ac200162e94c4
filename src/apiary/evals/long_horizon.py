"""The long-horizon metrics of a set of multi-turn episodes.

The held-out score of a multi-turn job is its success rate (episodes that reached the goal,
evals.heldout); its details add the mean episode score, the average turns to success, the
invalid-move rate (invalid moves / all of the worker's turns) and the mean score by episode length.
"""

from __future__ import annotations

from collections import defaultdict

from apiary.learners.play import Transcript

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


def episode_details(transcripts: list[Transcript]) -> dict:
    """What a multi-turn job's held-out result keeps beyond scores and replies: each episode's score,
    turns and invalid moves, and the long-horizon metrics of them all."""
    return {"episode_scores": [t.score for t in transcripts], "turns": [t.turns for t in transcripts],
            "invalid": [t.invalid for t in transcripts], "long_horizon": metrics(transcripts)}
