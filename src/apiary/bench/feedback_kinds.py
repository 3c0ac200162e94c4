"""What does each kind of feedback teach, for the same budget of 64 pieces?

On two jobs (the demo's chain_sum and products), the bundled core first attempts training tasks
(`--tasks` tasks x `--samples` answers each, temperature 0.7). A simulated person (see
apiary.evals.simulated_people) then gives up to `--budget` pieces of feedback of one kind on those
attempts; a fresh worker per kind learns from them alone (`--epochs` passes, batch 16), and its
held-out accuracy is measured before and after. All kinds see copies of the same attempts, and
corrections, critiques and hints go to the same wrong answers. Practice gets the same number of
failed attempts as seeds instead of feedback.

    python -m apiary.bench.feedback_kinds [--budget 64] [--tasks 96] [--samples 8] [--epochs 3]

Writes the "Feedback kinds" section of docs/benchmarks.md, docs/feedback_kinds.json and .png.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from apiary import GRPOConfig, Hive  # noqa: E402
from apiary.evals.simulated_people import simulate  # noqa: E402
from apiary.hive.mix import configs_with  # noqa: E402
from apiary.hive.recipes import DEMO  # noqa: E402
from apiary.bench.report import DOCS, machine, write_section  # noqa: E402

# (row label, simulated person's kind, learner)
KINDS = [
    ("rewards", "reward", "rewards"),
    ("corrections", "correction", "corrections"),
    ("critiques (give the answer)", "critique", "critiques"),
    ("critiques (do not)", "hint", "critiques"),
    ("preferences", "preference", "preferences"),
    ("practice", None, "practice"),
]
TITLE = "Feedback kinds: 64 pieces of each, two jobs"


def run_job(hive: Hive, worker_prefix: str, spec: str, overrides: list[str], args) -> dict:
    job = hive.job(spec, overrides)
    started = time.perf_counter()
    attempts = []
    for start in range(0, args.tasks, 16):
        attempts += hive.attempt(job, f"{worker_prefix}-attempts", min(16, args.tasks - start), samples=args.samples,
                                 start=start)
    attempt_seconds = time.perf_counter() - started
    print(f"{job.name}: {len(attempts)} attempts, {sum(e.score for e in attempts) / len(attempts):.3f} correct, "
          f"{attempt_seconds:.0f} s", flush=True)
    rows = []
    for label, kind, learner in KINDS:
        worker = f"{worker_prefix}-{learner}-{kind or 'seeds'}"
        # every kind at the one learning rate the section's figures were measured at (1e-3; corrections' default is
        # 5e-4 since 2026-12-01, measured with distil_back, which this comparison does not use)
        config = configs_with([learner], GRPOConfig(), 1e-3, epochs=args.epochs)[learner]
        if kind is None:  # practice: the same number of failed attempts as seeds, as many steps as feedback gets
            seeds = _copy(hive, job, [e for e in attempts if e.score < 1.0][:args.budget], worker)
            given, steps = len(seeds), args.epochs * -(-len(seeds) // config.batch_size)
        else:
            episodes = _copy(hive, job, attempts, worker)
            given = len(hive.store.add_feedback(simulate(episodes, kind, args.budget, seed=args.seed)))
            steps = None
        result = hive.learn(job, worker, learners=[learner], configs={learner: config}, steps=steps,
                            show_progress=False)
        rows.append({"kind": label, "learner": learner, "feedback": given, "before": result.before, "after": result.after,
                     "gain": result.after - result.before, "steps": result.steps, "learn_seconds": result.learn_seconds,
                     "wall_seconds": result.wall_seconds, "episodes_written": result.episodes})
        print(json.dumps(rows[-1]), flush=True)
    return {"job": job.name, "spec": [spec, *overrides], "attempts": len(attempts),
            "attempt_accuracy": sum(e.score for e in attempts) / len(attempts), "attempt_seconds": attempt_seconds,
            "heldout_items": len(job.source.heldout()), "rows": rows}


def _copy(hive: Hive, job, episodes, worker: str):
    """The same attempts, recorded as the given worker's (feedback is per worker)."""
    copies = [e.model_copy(update={"id": None, "worker": worker}) for e in episodes]
    hive.store.ensure_worker(worker, job.name, hive.core.name, job.describe(), prompt_format=hive.core.prompt_format.name)
    for copy, episode_id in zip(copies, hive.store.add_episodes(copies)):
        copy.id = episode_id
    return copies


def plot(jobs: list[dict], path) -> None:
    labels = [k[0] for k in KINDS]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(jobs)
    for j, job in enumerate(jobs):
        gains = [r["gain"] for r in job["rows"]]
        xs = [i + (j - (len(jobs) - 1) / 2) * width for i in range(len(labels))]
        bars = ax.bar(xs, gains, width, label=f"{job['job']} (before {job['rows'][0]['before']:.2f})")
        ax.bar_label(bars, fmt="%+.2f", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(labels)), [label.replace(" (", "\n(") for label in labels], fontsize=8)
    ax.set_ylabel("held-out accuracy gain")
    ax.set_title("64 pieces of feedback of one kind, fresh worker each (SmolLM2-135M, CPU)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_markdown(result: dict, command: str) -> None:
    lines = []
    for job in result["jobs"]:
        for r in job["rows"]:
            lines.append(f"| {job['job']} | {r['kind']} | {r['feedback']} | {r['before']:.3f} | {r['after']:.3f} | "
                         f"{r['gain']:+.3f} | {r['steps']} | {r['learn_seconds']:.0f} s | {r['wall_seconds']:.0f} s |")
    attempts = "; ".join(f"{j['job']}: {j['attempts']} answers, {j['attempt_accuracy']:.2f} correct, {j['attempt_seconds']:.0f} s"
                         for j in result["jobs"])
    verdicts = "\n".join(f"- {j['job']}: {_verdict(j)}" for j in result["jobs"])
    section = f"""## {TITLE}

Command: `{command}`
Machine: {result['machine']}. Core: bundled SmolLM2-135M-Instruct. Attempts the feedback is about ({attempts}).
Each row is a fresh worker learning from that kind alone: {result['epochs']} passes over the feedback, 16 per update;
held-out accuracy is greedy on the job's held-out split ({', '.join(f"{j['job']} {j['heldout_items']}" for j in result['jobs'])} items).
"feedback" is how many pieces the simulated person could give (preferences need a right and a wrong answer
to the same prompt; practice gets that many failed attempts as seeds). Learning time excludes evals; wall includes them.

| job | kind | feedback | before | after | gain | steps | learning | wall |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(lines)}

![held-out gain per kind of feedback](feedback_kinds.png)

Targets: critiques that give the answer reach at least 70% of the gain of corrections; critiques that do not
give it away still gain.
{verdicts}
"""
    write_section(TITLE, section)


def _verdict(job: dict) -> str:
    gain = {r["kind"]: r["gain"] for r in job["rows"]}
    corrections, critiques, hints = gain["corrections"], gain["critiques (give the answer)"], gain["critiques (do not)"]
    ratio = f"{critiques / corrections:.0%} of corrections' gain" if corrections > 0 else "corrections gained nothing"
    return (f"critiques {critiques:+.3f} vs corrections {corrections:+.3f} ({ratio}, "
            f"{'met' if corrections > 0 and critiques >= 0.7 * corrections else 'missed'}); "
            f"critiques that do not give the answer {hints:+.3f} ({'met' if hints > 0 else 'missed'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--tasks", type=int, default=96)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=len(DEMO.workers), help="how many of the demo's jobs")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as directory:
        hive = Hive(directory)
        jobs = [run_job(hive, worker, spec, overrides, args) for worker, spec, overrides in DEMO.workers[:args.jobs]]
    result = {"machine": machine(), "budget": args.budget, "epochs": args.epochs, "jobs": jobs}
    DOCS.mkdir(exist_ok=True)
    (DOCS / "feedback_kinds.json").write_text(json.dumps(result, indent=2))
    plot(jobs, DOCS / "feedback_kinds.png")
    write_markdown(result, f"python -m apiary.bench.feedback_kinds --budget {args.budget} --tasks {args.tasks} "
                           f"--samples {args.samples} --epochs {args.epochs}")
    for job in jobs:
        print(f"{job['job']}: {_verdict(job)}")


if __name__ == "__main__":
    main()
