"""Multi-turn play reading the whole conversation each turn, against going on from each reply's kept KV cache.

    python -m apiary.bench.turn_cache [--jobs ta:GuessTheNumber-v0 ta:FrozenLake-v0] [--games 50] [--core DIR]
        [--quick] [--docs DIR]

For each game, the held-out eval (`evals.heldout.evaluate`: every held-out game played to its end, at the job's
eval temperature with the eval seed) runs twice in one process on the same core: first with `play(...,
reuse_cache=False)` (every turn reads each live episode's whole conversation again: the reference), then with the
default (later turns read only their new tokens on top of the cache each row kept, learners.play). Reported: wall
time, the prompt tokens read (pads excluded), the peak resident memory of each pass (VmHWM reset before it, Linux),
the score, and how many episodes ended with the same last reply (both passes should play the same games).
Writes docs/turn_cache.json and the "Multi-turn play: kept caches" section of docs/benchmarks.md.
`--quick`: a tiny random core, 4 games of GuessTheNumber; writes only where --docs says.
"""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
import tempfile
import time
from pathlib import Path

TITLE = "Multi-turn play: kept caches"


def measure(job_spec: str, games: int, core) -> dict:
    """The job's held-out eval of `games` games, both ways, on `core`."""
    from apiary.bench.step_memory import _reset_peak, _status
    from apiary.evals import heldout
    from apiary.jobs.spec import load_job
    from apiary.learners.play import play
    from apiary.models import generate, prefix

    job = load_job(job_spec, [f"heldout_size={games}"])
    read = [0]
    extend, advance = prefix.extend, prefix.PrefillJob.advance

    def extend_counted(model, rows, suffixes, pad_id):
        read[0] += sum(len(s) for s in suffixes)
        return extend(model, rows, suffixes, pad_id)

    def advance_counted(self, model, budget=0):
        read[0] += int(self.mask_P_T[:, len(self.prefix):].sum()) + len(self.prefix)
        return advance(self, model, budget)

    passes = {}
    generate.extend, prefix.PrefillJob.advance = extend_counted, advance_counted
    try:
        for name, reuse in (("whole", False), ("kept", True)):
            heldout.play, read[0] = functools.partial(play, reuse_cache=reuse), 0
            _reset_peak()
            started = time.perf_counter()
            result = heldout.evaluate(core.model, core.tokenizer, job, core.stop_token_ids)
            passes[name] = {"seconds": round(time.perf_counter() - started, 1), "tokens_read": read[0],
                            "peak_mb": _status()[1], "score": round(result.score, 3),
                            "mean_turns": round(result.details["long_horizon"]["mean_turns"], 2),
                            "replies": result.details["completions"]}
    finally:
        generate.extend, prefix.PrefillJob.advance, heldout.play = extend, advance, play
    same = sum(a == b for a, b in zip(passes["whole"].pop("replies"), passes["kept"].pop("replies")))
    return {"job": job.name, "games": games, "same_last_reply": same, **passes}


def section(results: list[dict], command: str, core: str) -> str:
    from apiary.bench.report import table_head

    lines = table_head(TITLE, command, f"Core: {core}. Each game's held-out eval played twice in one process: reading every "
                       "live episode's whole conversation each turn, then going on from each reply's kept KV cache (the "
                       "default). Peaks: VmHWM reset before each pass.",
                       ["job", "games", "mean turns", "whole: s", "whole: tokens read", "whole: peak MB", "kept: s",
                        "kept: tokens read", "kept: peak MB", "speed-up", "score whole / kept", "same last reply"])
    for r in results:
        whole, kept = r["whole"], r["kept"]
        lines.append(f"| {r['job']} | {r['games']} | {kept['mean_turns']} | {whole['seconds']} | {whole['tokens_read']} | "
                     f"{whole['peak_mb']} | {kept['seconds']} | {kept['tokens_read']} | {kept['peak_mb']} | "
                     f"{whole['seconds'] / max(kept['seconds'], 1e-9):.2f}x | {whole['score']} / {kept['score']} | "
                     f"{r['same_last_reply']} of {r['games']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", nargs="+", default=["ta:GuessTheNumber-v0", "ta:FrozenLake-v0"])
    parser.add_argument("--games", type=int, default=50)
    parser.add_argument("--core", default=None, help="the core (default: the bundled one; --quick: a tiny random one)")
    parser.add_argument("--quick", action="store_true", help="a check that it runs: tiny core, 4 games of GuessTheNumber")
    parser.add_argument("--docs", type=Path, default=None, help="where benchmarks.md and turn_cache.json go (default docs/)")
    args = parser.parse_args(argv)
    from apiary.bench.kill_trials import tiny_core
    from apiary.bench.report import DOCS, core_label, publish
    from apiary.models.core import load_core

    if args.quick:
        args.jobs, args.games = ["ta:GuessTheNumber-v0"], 4
    with tempfile.TemporaryDirectory(prefix="apiary-turn-cache-") as scratch:
        core = load_core(args.core or (str(tiny_core(Path(scratch) / "core")) if args.quick else None))
        results = []
        for spec in args.jobs:
            results.append(measure(spec, args.games, core))
            print(results[-1], flush=True)
    given = argv if argv is not None else sys.argv[1:]
    text = section(results, f"python -m apiary.bench.turn_cache {shlex.join(given)}".strip(), core_label(args.core, args.quick))
    publish(TITLE, text, results, "turn_cache.json", args.docs or (None if args.quick else DOCS))
    return results


if __name__ == "__main__":
    main()
