"""`make demo`: the bundled core becomes two workers that learn reasoning-gym jobs on the job (recipes.DEMO)."""

from __future__ import annotations

from apiary.hive.hive import Hive, LearnResult
from apiary.hive.recipes import DEMO


def run_demo(hive: Hive, minutes: float = DEMO.minutes, show_progress: bool = True) -> list[LearnResult]:
    return [
        hive.learn(spec, worker, minutes=minutes, config=DEMO.rl, overrides=overrides, show_progress=show_progress)
        for worker, spec, overrides in DEMO.workers
    ]
