"""Long-horizon jobs: the bundled core before and after learning two TextArena games and the tool job.

For each job a fresh worker learns by RL over whole episodes (learners.grpo) for `--minutes`
of learning time; its held-out episodes (their own seeds, never trained on) are played to the end
before and after (games at temperature 0.7 with a fixed seed, the tool job greedily). Reported per
job: success rate, mean episode score, invalid-move rate (invalid moves / the worker's turns),
average turns (to success), score by episode length, steps, episodes, and wall time.

    python -m apiary.bench.long_horizon [--minutes 8] [--heldout 40] [--jobs guess,lake,tools]

Writes the "Long-horizon jobs" section of docs/benchmarks.md, docs/long_horizon.json and .png.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from apiary import GRPOConfig, Hive  # noqa: E402
from apiary.bench.report import DOCS, machine, write_section  # noqa: E402

JOBS = {"guess": "ta:GuessTheNumber-v0", "lake": "ta:FrozenLake-v0", "tools": "tools:calc+lookup"}
TITLE = "Long-horizon jobs: two TextArena games and tool use"


def run_job(hive: Hive, worker: str, spec: str, args) -> dict:
    config = GRPOConfig(prompts_per_step=args.prompts, samples_per_prompt=args.samples, learning_rate=args.lr,
                        temperature=args.temperature)
    started = time.perf_counter()
    result = hive.learn(spec, worker, minutes=args.minutes, learners=["rl"], config=config, overrides=[f"heldout_size={args.heldout}"],
                        checkpoint_every=1000, show_progress=True)
    figures = result.model_dump() | {"spec": spec, "wall_seconds": time.perf_counter() - started}
    before, after = result.long_horizon["before"], result.long_horizon["after"]
    print(f"{spec}: success {before['success_rate']:.2f} -> {after['success_rate']:.2f}, invalid "
          f"{before['invalid_rate']:.1%} -> {after['invalid_rate']:.1%}, {result.steps} steps, "
          f"{figures['wall_seconds']:.0f} s", flush=True)
    return figures


def plot(rows: list[dict], path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    names = [r["job"] for r in rows]
    x = range(len(rows))
    for ax, key, label in ((axes[0], "success_rate", "held-out success rate"), (axes[1], "invalid_rate", "invalid-move rate")):
        ax.bar([i - 0.2 for i in x], [r["long_horizon"]["before"][key] for r in rows], 0.4, label="core (before)")
        ax.bar([i + 0.2 for i in x], [r["long_horizon"]["after"][key] for r in rows], 0.4, label="worker (after)")
        ax.set_xticks(list(x), names)
        ax.set_ylabel(label)
        ax.set_ylim(0, 1)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(rows: list[dict], args, command: str) -> str:
    lines = [f"## {TITLE}", "",
             f"On {machine()}; each row's command is listed under the table. Bundled core, one fresh LoRA worker "
             f"per job, RL over whole episodes ({args.prompts} tasks x {args.samples} episodes per "
             f"step, sampling temperature {args.temperature:g}), {args.minutes:g} min of learning time each; "
             f"{args.heldout} held-out episodes per job (seeds never "
             "trained on), played to the end before and after (games at temperature 0.7 with a fixed seed, the tool "
             "job greedily). Success: the game was won / the tool job's final answer was right. Invalid-move "
             "rate: invalid moves or malformed tool calls over all of the worker's turns.", "",
             "| job | lr | success before | after | mean score before | after | invalid moves before | after | turns before | "
             "after | turns to success after | steps | episodes | learning (s) | wall (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b, a = r["long_horizon"]["before"], r["long_horizon"]["after"]
        to_success = "-" if a["turns_to_success"] is None else f"{a['turns_to_success']:.1f}"
        lines.append(f"| {r['spec']} | {r['args']['lr']:g} | {b['success_rate']:.2f} | **{a['success_rate']:.2f}** | {b['mean_score']:.2f} | "
                     f"{a['mean_score']:.2f} | {b['invalid_rate']:.1%} | **{a['invalid_rate']:.1%}** | {b['mean_turns']:.1f} | "
                     f"{a['mean_turns']:.1f} | {to_success} | {r['steps']} | {r['episodes']} | {r['learn_seconds']:.0f} | "
                     f"{r['wall_seconds']:.0f} |")
    lines += [""] + [f"- {r['spec']}: `{r.get('command', command)}`" for r in rows]
    lines += ["", "Mean episode score by episode length (worker turns), after learning:", "",
              "| job | " + " | ".join(f"{k} turns" for k in ("1-2", "3-5", "6-10", "11+")) + " |", "|---|---|---|---|---|"]
    for r in rows:
        by = r["long_horizon"]["after"]["score_by_length"]
        cells = [f"{by[k]['mean_score']:.2f} ({by[k]['episodes']})" if k in by else "-" for k in ("1-2", "3-5", "6-10", "11+")]
        lines.append(f"| {r['job']} | " + " | ".join(cells) + " |")
    lines += ["", "(episodes in brackets)", "", "![success and invalid moves before and after](long_horizon.png)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--heldout", type=int, default=40)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--temperature", type=float, default=0.7)  # at 1.0 the 135M core rambles; fewer valid moves
    parser.add_argument("--jobs", default=",".join(JOBS))
    parser.add_argument("--hive", default=None, help="keep the hive here (default: a temporary directory)")
    args = parser.parse_args()
    command = "python -m apiary.bench.long_horizon" + (f" --minutes {args.minutes:g}" if args.minutes != 8 else "") + \
        (f" --heldout {args.heldout}" if args.heldout != 40 else "") + (f" --lr {args.lr:g}" if args.lr != 1e-3 else "")
    path = DOCS / "long_horizon.json"
    saved = {r["spec"]: r for r in json.loads(path.read_text())["jobs"]} if path.exists() else {}
    with tempfile.TemporaryDirectory(prefix="apiary-long-horizon-") as directory:
        hive = Hive(args.hive or directory)
        for name in args.jobs.split(","):  # each job's figures are saved as soon as it ends
            saved[JOBS[name]] = run_job(hive, name, JOBS[name], args) | {"machine": machine(), "args": vars(args),
                                                                         "command": f"{command} --jobs {name}"}
            path.write_text(json.dumps({"command": command, "jobs": list(saved.values())}, indent=1, default=str))
    rows = [saved[spec] for spec in JOBS.values() if spec in saved]
    plot(rows, DOCS / "long_horizon.png")
    write_section(TITLE, markdown(rows, args, command), DOCS)


if __name__ == "__main__":
    main()
