"""Three jobs, two ways to learn them: the hive (workers in parallel, then consolidation) against
naive sequential fine-tuning of one LoRA adapter on the jobs in turn. One run, same core, same
jobs, same learning budget per job.

1. Workers: the bundled core becomes three workers, each learning its job for `--minutes` with
   the demo's RL settings, all starting from the same core. Each worker is also scored on the
   other jobs.
2. Consolidation: each method (distillation, linear, TIES, DARE merges) builds a candidate core
   from the three workers; each is measured and gated, none is released (so all start from the
   same core and the same workers).
3. Naive sequential: one adapter learns job 1, then job 2, then job 3, `--minutes` each; after
   each stage it is scored on every job (the forgetting matrix R, with ACC/BWT/FWT as in GEM).
4. Retention (KL to the base on the retention prompts; right-to-wrong flips on the retention
   items) for every worker, every candidate, and the sequential adapter after its last stage.

    python benchmarks/continual.py [--minutes 3] [--distill-steps 40]

Writes the "Continual learning" section of docs/benchmarks.md and docs/continual.json / .png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from apiary import ConsolidateConfig, DistillConfig, Hive  # noqa: E402
from apiary.evals.candidate import measure_retention  # noqa: E402
from apiary.evals.forgetting import transfer  # noqa: E402
from apiary.hive.demo import DEMO_CONFIG  # noqa: E402
from apiary.models import adapters  # noqa: E402
from apiary.models.adapters import LoraSpec  # noqa: E402
from apiary.models.core import cache_dir  # noqa: E402
from apiary.store.records import AdapterVersion  # noqa: E402
from report import DOCS, machine, write_section  # noqa: E402

ONE_DIGIT = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"]
JOBS = [  # (worker, spec, overrides): three jobs where the bundled core starts weak
    ("arith", "rg:chain_sum", ONE_DIGIT),
    ("times", "rg:products", ONE_DIGIT),
    ("gcd", "rg:gcd", ["min_numbers=2", "max_numbers=2", "max_value=20"]),
]
METHODS = ["distill", "linear", "ties", "dare_linear"]
TITLE = "Continual learning: three jobs, the hive against naive sequential fine-tuning"


def retention_of(hive: Hive, worker: str) -> dict:
    """Retention KL and flips of a worker's latest adapter on the base core."""
    core = hive.core_at(0)
    model = adapters.attach(core.model, LoraSpec(), path=hive.store.adapter_dir(worker, hive.store.latest_adapter(worker).version))
    try:
        kept = measure_retention(model, core, cache_dir(), adapter_over_base=True)
    finally:
        adapters.detach(model)
    return {"retention_kl": kept.kl, "flips": kept.flips}


def seed_from(hive: Hive, job, name: str, previous: str) -> None:
    """Start worker `name` (on `job`) from `previous`'s latest adapter: the next stage of one adapter."""
    store, core = hive.store, hive.core_at(0)
    store.ensure_worker(name, job.name, core.name, job.describe(), 0)
    source = store.adapter_dir(previous, store.latest_adapter(previous).version)
    shutil.copytree(source, store.adapter_dir(name, 1))
    store.add_adapter_version(AdapterVersion(worker=name, version=1, parent=0, path=str(store.adapter_dir(name, 1)),
                                             run_id=None, step=0, final=True), [])


def run(args) -> dict:
    hive = Hive(Path(tempfile.mkdtemp(prefix="apiary-continual-")))
    jobs = [hive.job(spec, overrides) for _, spec, overrides in JOBS]
    started = time.perf_counter()
    base = [hive.eval_core(job, 0).score for job in jobs]
    workers = {}
    for (worker, spec, overrides), job in zip(JOBS, jobs):
        result = hive.learn(job, worker, minutes=args.minutes, config=DEMO_CONFIG)
        workers[worker] = {"job": job.name, "before": result.before, "after": result.after, "seconds": result.learn_seconds,
                           "episodes": result.episodes}
    worker_rows = [[hive.latest_eval(w, job).score for job in jobs] for w, _, _ in JOBS]
    for worker, _, _ in JOBS:
        workers[worker] |= retention_of(hive, worker)
    print("workers", json.dumps(workers, indent=1), flush=True)

    consolidated = {}
    for method in METHODS:
        config = ConsolidateConfig(method=method, distill=DistillConfig(steps=args.distill_steps), release=False)
        result = hive.consolidate(config=config, jobs={w: j for (w, _, _), j in zip(JOBS, jobs)})
        consolidated[method] = result.model_dump()
        print(method, result.model_dump_json(indent=1), flush=True)

    R, previous = [], None
    for (worker, _, _), job in zip(JOBS, jobs):
        name = f"seq-{worker}"
        if previous is not None:
            seed_from(hive, job, name, previous)
        hive.learn(job, name, minutes=args.minutes, config=DEMO_CONFIG)
        R.append([hive.latest_eval(name, j).score for j in jobs])
        previous = name
    sequential = {"R": R, "transfer": transfer(R, base).__dict__, **retention_of(hive, previous)}
    print("sequential", json.dumps(sequential, indent=1), flush=True)
    return {"jobs": [j.name for j in jobs], "base": base, "workers": workers, "worker_rows": worker_rows,
            "consolidated": consolidated, "sequential": sequential, "minutes_per_job": args.minutes,
            "distill_steps": args.distill_steps, "wall_seconds": time.perf_counter() - started, "machine": machine(),
            "hive": str(hive.path)}


def summary_rows(fig: dict) -> list[dict]:
    """One row per final model: score per job, ACC, BWT (final minus learned score), retention."""
    learned = [fig["worker_rows"][i][i] for i in range(len(fig["jobs"]))]
    rows = []
    extra = {f"{m} ({note})": r for m, note, r in ((a["method"], a["note"], a["result"]) for a in fig.get("ablations", []))}
    for method, r in (fig["consolidated"] | extra).items():
        final = [next(s["candidate"] for s in r["jobs"] if s["job"] == job) for job in fig["jobs"]]
        gains = [next(s["gain_kept"] for s in r["jobs"] if s["job"] == job) for job in fig["jobs"]]
        rows.append({"model": f"hive: {method}", "final": final, "acc": sum(final) / len(final),
                     "bwt": sum(f - w for f, w in zip(final, learned)) / len(final), "gain_kept": gains,
                     "retention_kl": r["retention_kl"], "flips": r["flips"], "gate": "pass" if r["passed"] else
                     "refused: " + "; ".join(r["reasons"])})
    seq = fig["sequential"]
    rows.append({"model": "naive sequential LoRA", "final": seq["R"][-1], "acc": seq["transfer"]["acc"],
                 "bwt": seq["transfer"]["bwt"], "fwt": seq["transfer"]["fwt"], "retention_kl": seq["retention_kl"],
                 "flips": seq["flips"], "gain_kept": [
                     (seq["R"][-1][i] - fig["base"][i]) / (seq["R"][i][i] - fig["base"][i])
                     if seq["R"][i][i] > fig["base"][i] else None for i in range(len(fig["jobs"]))]})
    return rows


def plot(fig: dict, path: Path) -> None:
    jobs = fig["jobs"]
    labels = ["base"] + [f"worker {w}" for w, _, _ in JOBS] + [f"seq after {j}" for j in jobs] + \
             [f"hive {m}" for m in fig["consolidated"]]
    matrix = [fig["base"]] + fig["worker_rows"] + fig["sequential"]["R"] + [
        [next(s["candidate"] for s in r["jobs"] if s["job"] == job) for job in jobs] for r in fig["consolidated"].values()]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 5.5), gridspec_kw={"width_ratios": [1.1, 1]})
    image = left.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    left.set_xticks(range(len(jobs)), jobs)
    left.set_yticks(range(len(labels)), labels)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            left.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black", fontsize=8)
    left.set_title("held-out score (rows: models, in the order they were made)")
    figure.colorbar(image, ax=left, fraction=0.046)
    rows = summary_rows(fig) + [{"model": f"worker {w}", **{k: fig["workers"][w][k] for k in ("retention_kl", "flips")}}
                                for w, _, _ in JOBS]
    names = [r["model"] for r in rows]
    right.barh(names, [100 * r["flips"]["right_to_wrong"] / r["flips"]["items"] for r in rows], color="tab:red")
    right.axvline(2, color="black", linestyle="--", linewidth=1)
    right.set_xlabel("retention items flipped right to wrong (%); dashed: the 2% bound")
    right.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def markdown(fig: dict) -> str:
    jobs, rows = fig["jobs"], summary_rows(fig)
    head = " | ".join(jobs)
    lines = [f"## {TITLE}\n",
             f"`python benchmarks/continual.py --minutes {fig['minutes_per_job']:g} --distill-steps {fig['distill_steps']}` "
             f"({fig['wall_seconds'] / 60:.0f} min in all on {fig['machine']}). Jobs: " +
             ", ".join(f"`{spec} {' '.join(o)}`" for _, spec, o in JOBS) + f"; {fig['minutes_per_job']:g} min of RL per job "
             "(demo settings) for each worker and for each sequential stage. Held-out scores are greedy.\n",
             "![continual](continual.png)\n",
             f"| model | {head} | ACC | BWT | gain kept per job | retention KL | flips right to wrong | gate |",
             "|---" * (len(jobs) + 7) + "|",
             f"| base core | {' | '.join(f'{b:.2f}' for b in fig['base'])} | {sum(fig['base']) / len(jobs):.2f} | | | 0 | 0 | |"]
    for w, _, _ in JOBS:
        info = fig["workers"][w]
        row = fig["worker_rows"][[x for x, _, _ in JOBS].index(w)]
        lines.append(f"| worker {w} | {' | '.join(f'{s:.2f}' for s in row)} | | | | {info['retention_kl']:.4f} | "
                     f"{info['flips']['right_to_wrong']} of {info['flips']['items']} | |")
    for r in rows:
        gains = ", ".join("-" if g is None else f"{g:.2f}" for g in r["gain_kept"])
        lines.append(f"| {r['model']} | {' | '.join(f'{s:.2f}' for s in r['final'])} | {r['acc']:.2f} | {r['bwt']:+.2f} | "
                     f"{gains} | {r['retention_kl']:.4f} | {r['flips']['right_to_wrong']} of {r['flips']['items']} | "
                     f"{r.get('gate', '')} |")
    seq = fig["sequential"]
    lines += ["", "Naive sequential forgetting matrix R[i][j] (row: after learning job i; GEM's ACC/BWT/FWT with the "
              f"base core's scores as the reference): ACC {seq['transfer']['acc']:.2f}, BWT {seq['transfer']['bwt']:+.2f}, "
              f"FWT {seq['transfer']['fwt']:+.2f}.", "", f"| after | {head} |", "|---" * (len(jobs) + 1) + "|"]
    lines += [f"| {jobs[i]} | {' | '.join(f'{s:.2f}' for s in row)} |" for i, row in enumerate(seq["R"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--distill-steps", type=int, default=40)
    parser.add_argument("--from-json", type=Path, help="rewrite the docs from a saved run instead of running")
    parser.add_argument("--ablation", type=Path, nargs=2, metavar=("NOTE", "RESULT_JSON"),
                        help="with --from-json: add a `consolidate --json` result on the same hive as a row")
    args = parser.parse_args()
    fig = json.loads(args.from_json.read_text()) if args.from_json else run(args)
    if args.ablation:
        note, result = args.ablation
        fig.setdefault("ablations", []).append({"note": str(note), "method": json.loads(result.read_text())["method"],
                                                "result": json.loads(result.read_text())})
    (DOCS / "continual.json").write_text(json.dumps(fig, indent=1))
    plot(fig, DOCS / "continual.png")
    write_section(TITLE, markdown(fig))
    print(markdown(fig))


if __name__ == "__main__":
    main()
