"""Episodes per second with workers on a local Ray cluster, against the same workers one after another.

Each configuration learns fresh workers on chain_sum (2 terms, 1 digit) for a step budget, in a fresh
hive: N workers one after another in this process (`Hive.learn_many` without an address), and N workers
at once as Ray actors of one CPU each on a local Ray cluster started here (`ray.init(num_cpus=...)`, no
dashboard). Wall time counts everything a user waits for (actors starting, the core loading in each,
held-out evals before and after; the gate is skipped: release "ungated"); learning time counts sampling
and updates only, as LearnResult does. Threads: in turn, torch's default (every core); an actor, one per
CPU it asked for (Ray sets OMP_NUM_THREADS), so on a machine busy with other work the two differ in more
than where they run (in the --quick checks on a shared 2-core machine, a tiny-core step took 10-40x longer
in turn than in an actor).

    python -m apiary.bench.cluster [--workers 1,2] [--steps 4] [--core DIR] [--quick]

Writes the "Workers on a Ray cluster" section of docs/benchmarks.md and docs/cluster.json (`--quick`: the
tiny random core, one step, two held-out items; prints the section and writes only where --docs says).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from apiary.bench.kill_trials import tiny_core
from apiary.hive.cluster import LearnPlan
from apiary.hive.hive import Hive
from apiary.learners.grpo import GRPOConfig

TITLE = "Workers on a Ray cluster"
JOB = ("rg:chain_sum", ("min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"))


@dataclass
class Figure:
    """One configuration: how many workers, where, and what it took."""
    mode: str  # "in turn" (one process) or "ray" (actors at once)
    workers: int
    episodes: int
    wall_seconds: float
    learn_seconds: float  # the workers' learning time added up (sampling and updates)

    @property
    def episodes_per_s(self) -> float:
        return self.episodes / self.wall_seconds

    @property
    def learn_episodes_per_s(self) -> float:  # per learning-second of one worker
        return self.episodes / self.learn_seconds


def measure(root: Path, core: str | None, workers: int, steps: int, config: GRPOConfig, heldout: int,
            address: str | None) -> Figure:
    """`workers` fresh workers learn `steps` steps each in a fresh hive, on the cluster at `address` or in turn."""
    hive = Hive(root / f"{'ray' if address else 'turn'}-{workers}", core=core)
    overrides = (*JOB[1], f"heldout_size={heldout}")
    plans = [LearnPlan(JOB[0], f"w{i}", overrides=overrides, steps=steps, learners=("rl",), config=config,
                       release="ungated", seed=i)
             for i in range(workers)]
    started = time.perf_counter()
    results = hive.learn_many(plans, cluster=address)
    wall = time.perf_counter() - started
    return Figure("ray" if address else "in turn", workers, sum(r.episodes for r in results), wall,
                  sum(r.learn_seconds for r in results))


def run(root: Path, core: str | None, counts: list[int], steps: int, config: GRPOConfig, heldout: int) -> list[Figure]:
    """Every count in turn in this process, then on a local Ray cluster of max(counts) CPUs (shut down after)."""
    import ray

    figures = [measure(root, core, n, steps, config, heldout, None) for n in counts]
    ray.init(num_cpus=max(counts), include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False,
             namespace="apiary")
    try:
        figures += [measure(root, core, n, steps, config, heldout, "auto") for n in counts]
    finally:
        ray.shutdown()
    return figures


def section(figures: list[Figure], command: str, setting: str) -> str:
    from apiary.bench.report import machine

    rows = "\n".join(f"| {f.mode} | {f.workers} | {f.episodes} | {f.wall_seconds:.1f} | {f.episodes_per_s:.2f} | "
                     f"{f.learn_seconds:.1f} | {f.learn_episodes_per_s:.2f} |" for f in figures)
    return (f"## {TITLE}\n\nCommand: `{command}`\nMachine: {machine()}. {setting}\n\n"
            "| where | workers | episodes | wall (s) | episodes/s (wall) | learning (s, summed) | "
            "episodes/s (learning) |\n| --- | --- | --- | --- | --- | --- | --- |\n" + rows + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated numbers of workers")
    parser.add_argument("--steps", type=int, default=4, help="RL steps per worker")
    parser.add_argument("--core", default=None, help="the core (default: the bundled one; --quick: a tiny random one)")
    parser.add_argument("--quick", action="store_true", help="a check that it runs: tiny core, one step, two items")
    parser.add_argument("--docs", type=Path, default=None, help="where benchmarks.md and cluster.json go (default docs/)")
    args = parser.parse_args()
    from apiary.bench.report import DOCS, write_section

    steps, heldout = (1, 2) if args.quick else (args.steps, 16)
    config = GRPOConfig(prompts_per_step=2, samples_per_prompt=4, max_new_tokens=3 if args.quick else 16)
    with tempfile.TemporaryDirectory(prefix="apiary-cluster-bench-") as scratch:
        core = args.core or (str(tiny_core(Path(scratch) / "core")) if args.quick else None)
        figures = run(Path(scratch), core, [int(n) for n in args.workers.split(",")], steps, config, heldout)
    setting = (f"chain_sum, {steps} RL step(s) per worker of {config.prompts_per_step} prompts x "
               f"{config.samples_per_prompt} samples, {heldout} held-out items, core {args.core or ('tiny' if args.quick else 'bundled')}; "
               "Ray: one CPU per worker on a local cluster.")
    text = section(figures, "python -m apiary.bench.cluster " + " ".join(sys.argv[1:]), setting)
    print(text)
    docs = args.docs or (None if args.quick else DOCS)
    if docs is not None:
        (docs / "cluster.json").write_text(json.dumps([asdict(f) for f in figures], indent=1))
        write_section(TITLE, text, docs)


if __name__ == "__main__":
    main()
