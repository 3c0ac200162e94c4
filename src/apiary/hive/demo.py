"""`make demo`: the whole loop on the bundled core (recipes.DEMO). Two workers learn reasoning-gym jobs on
the job, and each new adapter version passes or fails its worker gate; the hive then consolidates the
workers whose version passed (the recipe's consolidation, and the default gate), and the candidate core is
released or refused with its reasons. A core is only ever made from versions that passed: if none did,
the demo says so and consolidates nothing."""

from __future__ import annotations

import time

from pydantic import BaseModel

from apiary.hive.consolidate import ConsolidateConfig, ConsolidateResult
from apiary.hive.hive import Hive, LearnResult
from apiary.hive.recipes import DEMO, Recipe
from apiary.store.records import Worker


class DemoResult(BaseModel):
    workers: list[LearnResult]
    consolidation: ConsolidateResult | None = None  # None: nothing to consolidate (see `skipped`)
    skipped: str | None = None  # why nothing was consolidated
    seconds: float = 0.0


def run_demo(hive: Hive, recipe: Recipe = DEMO, minutes: float | None = None,
             consolidation: ConsolidateConfig | None = None, show_progress: bool = True) -> DemoResult:
    """The recipe's workers learn for `minutes` each (default: the recipe's), then the hive consolidates
    those whose live version passed its gate (`consolidation`: default, the recipe's)."""
    started = time.perf_counter()
    minutes = recipe.minutes if minutes is None else minutes
    configs = recipe.configs()
    learned = [hive.learn(spec, worker, minutes=minutes, learners=list(configs), configs=configs, overrides=overrides,
                          show_progress=show_progress) for worker, spec, overrides in recipe.workers]
    current = hive.store.current_core()
    records = [hive.store.worker(r.worker) for r in learned]
    sources = consolidation_sources(records, current)
    if not sources:
        return DemoResult(workers=learned, skipped=nothing_to_consolidate(records, current),
                          seconds=time.perf_counter() - started)
    result = hive.consolidate(config=consolidation or recipe.consolidation, workers=sources, show_progress=show_progress)
    return DemoResult(workers=learned, consolidation=result, seconds=time.perf_counter() - started)


def consolidation_sources(records: list[Worker], current: int) -> list[str]:
    """The workers the demo consolidates: those on the current core whose live adapter version has learned
    something, i.e. passed its gate (a version the gate refused is kept but never live)."""
    return [w.name for w in records if w.core_version == current and w.live_version]


def nothing_to_consolidate(records: list[Worker], current: int) -> str:
    """Why no core is made, worker by worker."""
    why = [f"{w.name} sits on core v{w.core_version}" if w.core_version != current else
           f"{w.name}: no version passed its gate (live adapter v0)" for w in records]
    return (f"nothing to consolidate: no worker on core v{current} has a version that passed its gate "
            f"({'; '.join(why)}); core v{current} stays current")
