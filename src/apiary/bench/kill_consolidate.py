"""Kills from outside: `apiary consolidate` SIGKILLed at a seeded random moment, then checked and run again.

A hive where two workers (chain_sum and products) each learned a step on the tiny core is made once;
each trial copies it, starts `apiary consolidate` on the copy (a subprocess; distillation with few
steps, or a linear merge, in turn), kills it with SIGKILL at a moment drawn uniformly from [0, the
length of one uninterrupted run) (seeded), and then (bench/kill_trials.py):
1. `apiary check` on the killed hive (a core version row whose artifact is missing or half-written is
   damage) and its safe repair (a staging directory, a core written but not recorded);
2. the current core must be the one before (v0) or a recorded core version that checks whole;
3. `apiary consolidate` again must succeed (unless the killed one had already released its core,
   which leaves no worker on the new current core to consolidate: then it was done);
4. items lost: adapter and core versions recorded before the kill that are gone after, a current core
   that is neither, plus any damage the check finds then.

Run: python -m apiary.bench.kills --command consolidate [--trials 20] [--seed 0] [--docs].
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from pathlib import Path

from apiary.bench.kill_trials import (KillReport, Trial, apiary, check_after_kill, damage, finish, kill_after, scratch,
                                      summarise, tiny_core)
from apiary.store.check import check_hive
from apiary.store.store import Store

TITLE = "Kills from outside: apiary consolidate"
WORKERS = {"sums": "rg:chain_sum", "times": "rg:products"}
JOB = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "heldout_size=4"]
METHODS = (["--method", "distill", "--steps", "2"], ["--method", "linear"])


def learned_hive(hive: Path, core: Path) -> Path:
    """Two workers that each learned one RL step (released ungated) on `core`: what consolidate builds from."""
    from apiary import Hive
    from apiary.learners.grpo import GRPOConfig

    made = Hive(hive, core=str(core))
    settings = GRPOConfig(prompts_per_step=2, samples_per_prompt=2, max_new_tokens=4)
    for worker, job in WORKERS.items():
        made.learn(job, worker, steps=1, learners=["rl"], config=settings, overrides=JOB, show_progress=False, release="ungated")
    made.store.engine.dispose()
    return hive


def _consolidate(hive: Path, core: Path, method: list[str], errors=subprocess.PIPE) -> subprocess.Popen:
    return apiary(["consolidate", *method, "--hive", str(hive), "--core", str(core), "--json"], errors=errors)


def _recorded(hive: Path) -> tuple[set[tuple[str, int]], set[int], int]:
    """(adapter versions, core versions, the current core)."""
    store = Store(hive)
    try:
        adapters = {(w, v.version) for w in WORKERS for v in store.adapter_versions(w)}
        return adapters, {c.version for c in store.core_versions()}, store.current_core()
    finally:
        store.engine.dispose()


def _moment(findings: list[str], cores: set[int], current: int) -> str:
    """What consolidate was doing when killed, from what the kill left."""
    if current:
        return "released"
    if cores:
        return "recording the decision"
    if any("staging leftover" in f and "/cores/" in f for f in findings):
        return "writing the core"
    if any("core version" in f and "never recorded" in f for f in findings):
        return "measuring the candidate"
    return "building the candidate"


def one_trial(template: Path, hive: Path, core: Path, method: list[str], kill_at: float) -> Trial:
    shutil.copytree(template, hive)
    killed = kill_after(_consolidate(hive, core, method, subprocess.DEVNULL), kill_at)
    found = [f.what for f in check_hive(hive).findings]
    trial = Trial(kill_at=round(kill_at, 2), killed=killed)
    check_after_kill(hive, trial)
    adapters, cores, current = _recorded(hive)
    trial.moment = _moment(found, cores, current) if killed else ""
    trial.recorded = len(adapters) + len(cores)
    unwhole = current not in cores | {0}  # the current core is the one before or a recorded version (checked whole above)
    trial.resumed = bool(current) or finish(_consolidate(hive, core, method), "consolidate after the kill")
    adapters_after, cores_after, _ = _recorded(hive)
    trial.lost = len(adapters - adapters_after) + len(cores - cores_after) + unwhole + damage(hive)
    return trial


def run(trials: int = 20, seed: int = 0, core: Path | None = None, kill_within: float | None = None,
        methods: tuple[list[str], ...] = METHODS, learned: Path | None = None) -> KillReport:
    """`trials` kills of consolidate (`methods` in turn: distillation and a linear merge), at moments drawn with
    `seed` from [0, kill_within) (default: one uninterrupted run's length, of the first method). `learned`: a
    hive whose workers (WORKERS) have live adapter versions on `core` (default: learned_hive's)."""
    rng = random.Random(seed)
    with scratch() as root:
        core = core or tiny_core(root / "core")
        template = learned or learned_hive(root / "learned", core)
        seconds = kill_within
        if seconds is None:
            shutil.copytree(template, root / "calibration")
            started = time.perf_counter()
            if not finish(_consolidate(root / "calibration", core, methods[0]), "an uninterrupted consolidate"):
                raise RuntimeError("an uninterrupted consolidate failed")
            seconds = time.perf_counter() - started
        done = [one_trial(template, root / f"hive{n}", core, methods[n % len(methods)], rng.uniform(0, seconds))
                for n in range(trials)]
    return summarise("consolidate", done, seconds)


def describe(report: KillReport) -> str:
    return ("`apiary consolidate` (the tiny core unless `--core`, two workers that learned a step each; distillation "
            "of 2 steps and a linear merge in turn) SIGKILLed at a seeded random moment within one uninterrupted "
            f"distillation's length ({report.seconds_per_run} s), then `apiary check`, `apiary check --repair`, the "
            "current core checked (the one before, or a recorded version whole), and `consolidate` again. Items: "
            "adapter and core versions recorded.")
