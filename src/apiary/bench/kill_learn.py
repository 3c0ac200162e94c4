"""Kills from outside: `apiary learn` SIGKILLed at a seeded random moment, then checked and resumed.

Each trial starts `apiary learn` (a subprocess, rl with distil_back on chain_sum, checkpoints every 5 steps) on a fresh
hive, kills it with SIGKILL at a moment drawn uniformly from [0, the length of one uninterrupted run)
(seeded; the length is that of the last uninterrupted run, the previous trial's resume, so that it follows
the machine's load: a length measured once, under load, put 11 of 20 moments after the run had ended), and
then (bench/kill_trials.py):
1. `apiary check` on the killed hive, and its safe repair;
2. resumes: runs the same `apiary learn` again, which must finish;
3. counts items lost: episodes and adapter versions recorded before the kill that are gone after the
   resume, plus any damage the check finds after it.

Run: python -m apiary.bench.kills --command learn [--trials 20] [--seed 0] [--docs].
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

from apiary.bench.kill_trials import (KillReport, Trial, apiary, check_after_kill, damage, finish, kill_after, scratch,
                                      summarise, tiny_core)
from apiary.store.store import Store

TITLE = "Kills from outside: apiary learn"
JOB = ["rg:chain_sum", "min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "heldout_size=8"]
SETTINGS = ["--prompts", "2", "--samples", "2", "--max-new-tokens", "4", "--release-ungated"]


def _learn(hive: Path, core: Path, steps: int, errors: int | None = subprocess.PIPE) -> subprocess.Popen:
    return apiary(["learn", *JOB, "--worker", "arith", "--steps", str(steps), *SETTINGS, "--hive", str(hive),
                   "--core", str(core), "--json"], errors=errors)


def _recorded(hive: Path) -> tuple[set[int], set[int]]:
    if not (hive / "hive.db").is_file():  # killed before the store was made: nothing to lose
        return set(), set()
    store = Store(hive)
    try:
        return {e.id for e in store.episodes()}, {v.version for v in store.adapter_versions("arith")}
    finally:
        store.engine.dispose()


def one_trial(hive: Path, core: Path, kill_at: float, steps: int = 10) -> tuple[Trial, float]:
    """The trial, and how long its resume (an uninterrupted run of `steps` steps) took."""
    killed = kill_after(_learn(hive, core, steps, subprocess.DEVNULL), kill_at)
    trial = Trial(kill_at=round(kill_at, 2), killed=killed, moment="learning run")
    check_after_kill(hive, trial)
    episodes, versions = _recorded(hive)
    trial.recorded = len(episodes) + len(versions)
    started = time.perf_counter()
    trial.resumed = finish(_learn(hive, core, steps), "the resumed learn")
    resume_seconds = time.perf_counter() - started
    after_episodes, after_versions = _recorded(hive)
    trial.lost = len(episodes - after_episodes) + len(versions - after_versions) + damage(hive)
    return trial, resume_seconds


def run(trials: int = 20, seed: int = 0, core: Path | None = None, kill_within: float | None = None,
        steps: int = 10) -> KillReport:
    """`trials` kills of a `steps`-step learn, at moments drawn with `seed` from [0, kill_within) (default:
    the length of the last uninterrupted run: a calibration run, then each trial's resume)."""
    rng = random.Random(seed)
    with scratch() as root:
        core = core or tiny_core(root / "core")
        started = time.perf_counter()
        if kill_within is None and not finish(_learn(root / "calibration", core, steps), "an uninterrupted learn"):
            raise RuntimeError("an uninterrupted learn failed")
        seconds = window = kill_within or time.perf_counter() - started
        done, windows = [], []
        for n in range(trials):
            windows.append(window)
            trial, resume_seconds = one_trial(root / f"hive{n}", core, rng.uniform(0, window), steps)
            done.append(trial)
            window = kill_within or (resume_seconds if trial.resumed else window)
    return summarise("learn", done, sum(windows) / len(windows) if kill_within is None else seconds)


def describe(report: KillReport) -> str:
    return (f"`apiary learn` (the tiny core unless `--core`, 10 steps of rl with distil_back's phases, checkpoints "
            f"every 5) SIGKILLed at a seeded random moment within one run's length (that of the run before: "
            f"{report.seconds_per_run} s on average), then `apiary check`, "
            "`apiary check --repair`, and the same `learn` again. Items: episodes and adapter versions recorded.")
