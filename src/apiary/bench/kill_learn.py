"""Kills from outside: `apiary learn` SIGKILLed at a seeded random moment, then checked and resumed.

Each trial starts `apiary learn` (a subprocess, RL on chain_sum, checkpoints every 5 steps) on a fresh
hive, kills it with SIGKILL at a moment drawn uniformly from [0, the length of one uninterrupted run)
(seeded), and then:
1. `apiary check` (store.check) on the killed hive: damage (a row pointing at a missing or corrupt
   artifact, a damaged database) makes the check unclean; leftovers of the kill (staging directories,
   versions written but not recorded) are counted and removed by the safe repair;
2. resumes: runs the same `apiary learn` again, which must finish;
3. counts items lost: episodes and adapter versions recorded before the kill that are gone after the
   resume, plus any damage the check finds after it.

Default core: a tiny random Llama with the bundled core's tokenizer (the trial is about the files, not
the model); --core points at another. Run: python -m apiary.bench.kill_learn [--trials 20] [--seed 0]
[--docs] (--docs writes the "Kills from outside" section of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from apiary.store.check import DAMAGE, LEFTOVER, check_hive
from apiary.store.store import Store

TITLE = "Kills from outside: apiary learn"
JOB = ["rg:chain_sum", "min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "heldout_size=8"]
SETTINGS = ["--prompts", "2", "--samples", "2", "--max-new-tokens", "4", "--release-ungated"]


@dataclass
class Trial:
    kill_at: float  # seconds after the start
    killed: bool  # False: the run had finished before the moment came
    damage_after_kill: list[str] = field(default_factory=list)
    leftovers: int = 0  # removed by the safe repair
    recorded: int = 0  # episodes and adapter versions in the store when it was killed
    resumed: bool = False
    lost: int = 0  # episodes and adapter versions recorded before the kill, gone after the resume, plus damage then


@dataclass
class KillReport:
    trials: int
    killed: int
    clean_checks: int  # killed hives with no damage (leftovers aside)
    leftovers_repaired: int
    items_at_kills: int  # episodes and adapter versions recorded when the kills came, summed over trials
    resumed: int
    items_lost: int
    seconds_per_run: float
    per_trial: list[Trial]


def tiny_core(out: Path) -> Path:
    """A 2-layer random Llama with the bundled core's tokenizer, saved as a HF directory (as the tests' fixture)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from apiary.models.core import resolve_core_dir

    tokenizer = AutoTokenizer.from_pretrained(resolve_core_dir(), local_files_only=True)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _learn(hive: Path, core: Path, steps: int, errors: int | None = subprocess.PIPE) -> subprocess.Popen:
    """`apiary learn` as its own process (`errors`: where its stderr goes; a process to be killed gets DEVNULL,
    so that an unread pipe never blocks it)."""
    command = [sys.executable, "-c", "from apiary.cli import main; main()", "learn", *JOB, "--worker", "arith", "--steps", str(steps), *SETTINGS,
               "--hive", str(hive), "--core", str(core), "--json"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)


def _recorded(hive: Path) -> tuple[set[int], set[int]]:
    store = Store(hive)
    try:
        return {e.id for e in store.episodes()}, {v.version for v in store.adapter_versions("arith")}
    finally:
        store.engine.dispose()


def one_trial(hive: Path, core: Path, kill_at: float, steps: int = 10) -> Trial:
    process = _learn(hive, core, steps, subprocess.DEVNULL)
    try:
        process.wait(timeout=kill_at)
        killed = False
    except subprocess.TimeoutExpired:
        process.kill()  # SIGKILL
        process.wait()
        killed = True
    trial = Trial(kill_at=round(kill_at, 2), killed=killed)
    if not (hive / "hive.db").is_file():  # killed before the store was made: nothing to lose
        episodes, versions = set(), set()
    else:
        report = check_hive(hive)
        trial.damage_after_kill = [f.what for f in report.findings if f.level == DAMAGE]
        trial.leftovers = sum(f.level == LEFTOVER for f in report.findings)
        check_hive(hive, repair=True)
        episodes, versions = _recorded(hive)
    trial.recorded = len(episodes) + len(versions)
    resume = _learn(hive, core, steps)
    _, err = resume.communicate()
    trial.resumed = resume.returncode == 0
    if not trial.resumed:
        print(err.decode()[-2000:], file=sys.stderr)
    after_episodes, after_versions = _recorded(hive)
    trial.lost = (len(episodes - after_episodes) + len(versions - after_versions)
                  + sum(f.level == DAMAGE for f in check_hive(hive).findings))
    return trial


def run(trials: int = 20, seed: int = 0, core: Path | None = None, kill_within: float | None = None,
        steps: int = 10) -> KillReport:
    """`trials` kills of a `steps`-step learn, at moments drawn with `seed` from [0, kill_within) (default:
    one uninterrupted run's length)."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="apiary-kill-") as scratch:
        root = Path(scratch)
        os.environ.setdefault("APIARY_CACHE", str(root / "cache"))
        core = core or tiny_core(root / "core")
        started = time.perf_counter()
        if kill_within is None:
            calibration = _learn(root / "calibration", core, steps)
            _, err = calibration.communicate()
            if calibration.returncode != 0:
                raise RuntimeError(f"an uninterrupted learn failed: {err.decode()[-2000:]}")
        seconds = kill_within or time.perf_counter() - started
        done = [one_trial(root / f"hive{n}", core, rng.uniform(0, seconds), steps) for n in range(trials)]
    return KillReport(trials=trials, killed=sum(t.killed for t in done),
                      clean_checks=sum(t.killed and not t.damage_after_kill for t in done),
                      leftovers_repaired=sum(t.leftovers for t in done), items_at_kills=sum(t.recorded for t in done),
                      resumed=sum(t.resumed for t in done),
                      items_lost=sum(t.lost for t in done), seconds_per_run=round(seconds, 1), per_trial=done)


def markdown(report: KillReport, command: str) -> str:
    return (f"## {TITLE}\n\n`{command}`: `apiary learn` (the tiny core unless `--core`, 10 RL steps, checkpoints every 5) SIGKILLed at a "
            f"seeded random moment within one run's length ({report.seconds_per_run} s), then `apiary check`, "
            "`apiary check --repair`, and the same `learn` again.\n\n"
            "| trials | killed mid-run | checks without damage | leftovers repaired | items recorded at the kills | resumed "
            "| items lost |\n| --- | --- | --- | --- | --- | --- | --- |\n"
            f"| {report.trials} | {report.killed} | {report.clean_checks} of {report.killed} | {report.leftovers_repaired} "
            f"| {report.items_at_kills} | {report.resumed} | {report.items_lost} |\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--core", type=Path, default=None, help="a HF directory (default: a tiny random Llama)")
    parser.add_argument("--kill-within", type=float, default=None, help="seconds (default: one uninterrupted run's length)")
    parser.add_argument("--docs", action="store_true", help="write the section of docs/benchmarks.md")
    args = parser.parse_args()
    report = run(args.trials, args.seed, args.core, args.kill_within)
    print(json.dumps(asdict(report), indent=1))
    print(f"trials {report.trials}, killed mid-run {report.killed}, checks without damage {report.clean_checks}, "
          f"leftovers repaired {report.leftovers_repaired}, items recorded at the kills {report.items_at_kills}, resumed {report.resumed}, items lost {report.items_lost}")
    if args.docs:
        from apiary.bench.report import write_section

        write_section(TITLE, markdown(report, f"python -m apiary.bench.kill_learn --trials {args.trials} --seed {args.seed}"))


if __name__ == "__main__":
    main()
