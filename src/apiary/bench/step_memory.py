"""Memory and time of RL learning steps, rollout and update apart, at several micro-batch token budgets.

    python -m apiary.bench.step_memory [--job ta:GuessTheNumber-v0] [--budgets 4096,1024,512] [--steps 2]
        [--prompts 4] [--samples 8] [--core DIR] [--quick] [--docs DIR]

Each budget (learners.grpo.TOKEN_BUDGET: episodes x longest, opening prompt included, per micro-batch of the
update) runs in a fresh process, since a process's peak never falls: the core with a fresh rank-16 adapter learns
the job with the RL learner for `steps` steps (a multi-turn job at its defaults, learners.grpo.MULTI_TURN), the same
seed for every budget, so every budget's first update trains on the same episodes. Before the rollout and before
the update the process's peak-resident mark is reset (5 written to /proc/self/clear_refs, Linux), so each phase's
peak (VmHWM) is its own; the peak still includes what the process held when the phase began (the model, memory
the allocator kept). The last column is the whole process's peak: the highest of the phases' and of loading (the
reset clears ru_maxrss too, so that cannot be read at the end).
Writes docs/step_memory.json and the "Memory of a learning step" section of docs/benchmarks.md.
`--quick`: a tiny random core, one step of 2 x 2 episodes; writes only where --docs says.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TITLE = "Memory of a learning step"


def _status() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def measure(job_spec: list[str], budget: int, steps: int, prompts: int, samples: int, core_dir: str | None) -> dict:
    """In this process: `steps` RL steps on the job with TOKEN_BUDGET = `budget`, each phase's time and peak."""
    import torch

    from apiary.jobs.spec import load_job
    from apiary.learners import grpo
    from apiary.models import adapters
    from apiary.models.core import load_core

    torch.manual_seed(0)
    grpo.TOKEN_BUDGET = budget
    core, job = load_core(core_dir), load_job(job_spec[0], job_spec[1:])
    defaults = grpo.MULTI_TURN if job.multi_turn else {}
    config = grpo.GRPOConfig(**{**defaults, "prompts_per_step": prompts, "samples_per_prompt": samples})
    model = adapters.attach(core.model, adapters.LoraSpec())
    loaded_peak = _status()[1]
    learner = grpo.GRPOLearner(model, core.tokenizer, job, config, core.stop_token_ids, torch.Generator().manual_seed(0))
    rows = []
    for step in range(steps):
        tasks = job.source.train(step * prompts, prompts)
        _reset_peak()
        started = time.perf_counter()
        transcripts = learner.rollout(tasks)
        rolled, rollout_peak = time.perf_counter(), _status()[1]
        _reset_peak()
        stats = learner.train(tasks, transcripts, rolled - started)
        rows.append({"step": step, "episodes": len(transcripts), "longest": max(len(t.prompt_ids) + len(t.ids) for t in transcripts),
                     "rollout_s": round(rolled - started, 1), "rollout_peak_mb": rollout_peak,
                     "trained": stats.trained_samples, "update_s": round(stats.train_seconds, 1),
                     "update_peak_mb": _status()[1]})
    peaks = [loaded_peak] + [row[k] for row in rows for k in ("rollout_peak_mb", "update_peak_mb")]
    return {"budget": budget, "steps": rows, "process_peak_mb": max(peaks)}


def run(job_spec: list[str], budgets: list[int], steps: int, prompts: int, samples: int, core_dir: str | None) -> list[dict]:
    """`measure` each budget in a fresh process, one after another."""
    results = []
    for budget in budgets:
        command = [sys.executable, "-m", "apiary.bench.step_memory", "--child", "--budgets", str(budget), "--steps", str(steps),
                   "--prompts", str(prompts), "--samples", str(samples), "--job", *job_spec]
        done = subprocess.run(command + (["--core", core_dir] if core_dir else []), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"budget {budget} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"budget {budget}: " + "; ".join(f"rollout {r['rollout_s']} s {r['rollout_peak_mb']} MB, update {r['update_s']} s "
                                              f"{r['update_peak_mb']} MB" for r in results[-1]["steps"]), flush=True)
    return results


def section(results: list[dict], command: str, core: str) -> str:
    from apiary.bench.report import table_head

    lines = table_head(TITLE, command, f"Core: {core}, a fresh rank-16 adapter. Peaks are VmHWM reset before each phase (so "
                       "each includes what the process held when the phase began); the last column is the whole process's peak.",
                       ["token budget", "step", "episodes", "longest (tokens)", "rollout (s)", "rollout peak (MB)", "trained",
                        "update (s)", "update peak (MB)", "process peak (MB)"])
    for result in results:
        for row in result["steps"]:
            lines.append(f"| {result['budget']} | {row['step']} | {row['episodes']} | {row['longest']} | {row['rollout_s']} | "
                         f"{row['rollout_peak_mb']} | {row['trained']} | {row['update_s']} | {row['update_peak_mb']} | "
                         f"{result['process_peak_mb']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", nargs="+", default=["ta:GuessTheNumber-v0"], help="a job spec, then key=value config")
    parser.add_argument("--budgets", default="4096,1024,512", help="comma-separated TOKEN_BUDGET values")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--core", default=None, help="the core (default: the bundled one; --quick: a tiny random one)")
    parser.add_argument("--quick", action="store_true", help="a check that it runs: tiny core, one step of 2 x 2")
    parser.add_argument("--docs", type=Path, default=None, help="where benchmarks.md and step_memory.json go (default docs/)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one budget, in this process
    args = parser.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",")]
    if args.child:
        print(json.dumps(measure(args.job, budgets[0], args.steps, args.prompts, args.samples, args.core)))
        return []
    from apiary.bench.kill_trials import tiny_core
    from apiary.bench.report import DOCS, core_label, publish

    if args.quick:
        args.steps, args.prompts, args.samples = 1, 2, 2
    with tempfile.TemporaryDirectory(prefix="apiary-step-memory-") as scratch:
        core_dir = args.core or (str(tiny_core(Path(scratch) / "core")) if args.quick else None)
        results = run(args.job, budgets, args.steps, args.prompts, args.samples, core_dir)
    given = argv if argv is not None else sys.argv[1:]
    text = section(results, "python -m apiary.bench.step_memory " + shlex.join(given),
                   core_label(args.core, args.quick))
    publish(TITLE, text, results, "step_memory.json", args.docs or (None if args.quick else DOCS))
    return results


if __name__ == "__main__":
    main()
