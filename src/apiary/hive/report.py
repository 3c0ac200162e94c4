"""`apiary report`: what the hive learned and forgot, as markdown plus PNG plots, from the store alone.

- learning curves: each worker's mean training reward per step, with its held-out scores;
- forgetting matrix: held-out score of every core version (and each worker) on every job, as a heatmap;
- retention over core versions: KL to the base on the retention prompts and right-to-wrong flips;
- reward-hacking check: per worker, training reward against held-out score at each evaluated
  adapter version; a gap that widens by more than `gap_alarm` is flagged (jobs can score
  held-out answers with a different scorer than the training reward: `heldout_scorer`);
- every gate decision (core versions and workers' adapter versions) with its reasons, and every
  release a user made past the gate.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from apiary.hive.status import gate_verdict, status  # noqa: E402
from apiary.store.store import Store  # noqa: E402

GAP_ALARM = 0.15


def write_report(store: Store, out: Path, gap_alarm: float = GAP_ALARM) -> dict:
    """Write report.md and its PNGs to `out`; returns the figures it shows (for --json)."""
    out.mkdir(parents=True, exist_ok=True)
    figures = {"status": status(store), "curves": learning_curves(store), "matrix": forgetting_matrix(store),
               "hacking": reward_gaps(store, gap_alarm)}
    _plot_curves(figures["curves"], out / "learning_curves.png")
    _plot_matrix(figures["matrix"], out / "forgetting.png")
    _plot_retention(figures["status"]["core_versions"], out / "retention.png")
    (out / "report.md").write_text(_markdown(figures))
    return figures | {"files": sorted(str(p) for p in out.iterdir())}


def learning_curves(store: Store) -> dict[str, dict]:
    """worker -> {"steps": [...], "reward": [...], "heldout": [(step, score), ...]} (steps counted over all runs)."""
    curves = {}
    evals = store.evals()
    for w in store.workers():
        by_step: dict[tuple, list[float]] = defaultdict(list)
        for e in store.episodes(w.name):
            if e.origin == "rl":
                by_step[(e.run_id, e.step)].append(e.score)
        keys = sorted(by_step)
        step_of_version = {0: 0}
        offset, runs = 0, {}
        for run_id, step in keys:
            runs.setdefault(run_id, offset)
            offset = max(offset, runs[run_id] + step + 1)
        for v in store.adapter_versions(w.name):
            step_of_version[v.version] = runs.get(v.run_id, 0) + v.step
        heldout = [(step_of_version.get(e.adapter_version, 0), e.score) for e in evals
                   if e.worker == w.name and e.job == w.job]
        curves[w.name] = {"steps": [runs[r] + s + 1 for r, s in keys],
                             "reward": [sum(by_step[k]) / len(by_step[k]) for k in keys], "heldout": heldout,
                             "job": w.job}
    return curves


def forgetting_matrix(store: Store) -> dict:
    """Held-out score of each core version and each worker's live adapter version on each job (latest eval)."""
    jobs = sorted({e.job for e in store.evals()})
    rows: dict[str, dict[str, float]] = {}
    for e in store.evals():
        if e.worker is None:
            rows.setdefault(f"core v{e.core_version}", {})[e.job] = e.score
    for w in store.workers():
        for e in store.evals(w.name):
            if w.live_version and e.adapter_version == w.live_version:
                rows.setdefault(f"worker {w.name}", {})[e.job] = e.score
    order = sorted(rows, key=lambda r: (not r.startswith("core"), int(r[6:]) if r.startswith("core") else 0, r))
    return {"jobs": jobs, "rows": order, "scores": [[rows[r].get(j) for j in jobs] for r in order]}


def reward_gaps(store: Store, gap_alarm: float) -> list[dict]:
    """Training reward against held-out score per worker, and whether the gap widened."""
    out = []
    for w in store.workers():
        versions = store.adapter_versions(w.name)
        if not versions:
            continue
        reward_at = {}
        for v in versions:
            scores = [e.score for e in store.episodes_by_id(store.trained_on(w.name, v.version)).values()
                      if e.adapter_version == v.parent and e.origin == "rl"]
            if scores:
                reward_at[v.version] = sum(scores) / len(scores)
        if not reward_at:
            continue
        reward_at[0] = reward_at[min(reward_at)]  # before learning: the reward of its first rollouts
        points = [{"adapter_version": e.adapter_version, "train_reward": reward_at[e.adapter_version], "heldout": e.score,
                   "gap": reward_at[e.adapter_version] - e.score}
                  for e in _latest_per_version(store.evals(w.name), w.job) if e.adapter_version in reward_at] + [
                  {"adapter_version": 0, "train_reward": reward_at[0], "heldout": e.score, "gap": reward_at[0] - e.score}
                  for e in store.evals() if e.worker is None and e.job == w.job and e.core_version == w.core_version][:1]
        points.sort(key=lambda p: p["adapter_version"])
        widened = len(points) > 1 and points[-1]["gap"] - points[0]["gap"] > gap_alarm
        out.append({"worker": w.name, "job": w.job, "points": points, "flag": widened})
    return out


def _latest_per_version(evals: list, job: str) -> list:
    """The latest eval of each adapter version on the worker's own job."""
    return list({e.adapter_version: e for e in evals if e.job == job}.values())


def _plot_curves(curves: dict, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(7, 4))
    for i, (name, c) in enumerate(curves.items()):
        color = f"C{i}"
        axis.plot(c["steps"], c["reward"], color=color, alpha=0.6, label=f"{name} ({c['job']}): training reward")
        if c["heldout"]:
            xs, ys = zip(*sorted(c["heldout"]))
            axis.plot(xs, ys, "o--", color=color, label=f"{name}: held-out")
    axis.set_xlabel("step")
    axis.set_ylabel("score")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_matrix(matrix: dict, path: Path) -> None:
    values = [[float("nan") if v is None else v for v in row] for row in matrix["scores"]] or [[float("nan")]]
    figure, axis = plt.subplots(figsize=(1.5 + 1.2 * max(1, len(matrix["jobs"])), 1 + 0.45 * max(1, len(matrix["rows"]))))
    axis.imshow(values, vmin=0, vmax=1, cmap="viridis")
    axis.set_xticks(range(len(matrix["jobs"])), matrix["jobs"])
    axis.set_yticks(range(len(matrix["rows"])), matrix["rows"])
    for i, row in enumerate(matrix["scores"]):
        for j, v in enumerate(row):
            axis.text(j, i, "-" if v is None else f"{v:.2f}", ha="center", va="center",
                      color="white" if v is None or v < 0.6 else "black", fontsize=8)
    axis.set_title("held-out score")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_retention(cores: list[dict], path: Path) -> None:
    versions = [0] + [c["version"] for c in cores]
    kl = [0.0] + [c["retention_kl"] or 0.0 for c in cores]
    flips = [0.0] + [100 * c["flips"]["right_to_wrong"] / max(1, c["flips"]["items"]) if c["flips"] else 0.0 for c in cores]
    figure, left = plt.subplots(figsize=(6, 3.5))
    left.plot(versions, kl, "o-", color="C0")
    left.set_xlabel("core version")
    left.set_ylabel("retention KL (nats/token)", color="C0")
    right = left.twinx()
    right.plot(versions, flips, "s--", color="C3")
    right.set_ylabel("retention items flipped right to wrong (%)", color="C3")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _markdown(figures: dict) -> str:
    s, matrix = figures["status"], figures["matrix"]
    lines = [f"# Hive report: {s['hive']}\n", f"Current core: **v{s['current_core']}**.\n",
             "![learning curves](learning_curves.png)\n", "## Forgetting matrix\n", "![forgetting](forgetting.png)\n",
             "| | " + " | ".join(matrix["jobs"]) + " |", "|---" * (len(matrix["jobs"]) + 1) + "|"]
    lines += [f"| {r} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in row) + " |"
              for r, row in zip(matrix["rows"], matrix["scores"])]
    lines += ["", "## Core versions and retention\n", "![retention](retention.png)\n",
              "| version | parent | method | sources | retention KL | flips | gate | released |", "|---" * 8 + "|"]
    for c in s["core_versions"]:
        flips = f"{c['flips']['right_to_wrong']} of {c['flips']['items']}" if c["flips"] else "-"
        gate = "pass" if c["passed"] else "refused: " + "; ".join(c["reasons"])
        sources = ", ".join(f"{x['worker']} v{x['adapter_version']}" for x in c["sources"])
        lines.append(f"| v{c['version']} | v{c['parent']} | {c['method']} | {sources} | {c['retention_kl']:.4f} | {flips} | "
                     f"{gate} | {'yes' if c['released'] else 'no'} |")
    lines += ["", "## Worker versions and their gate\n",
              "| worker | version | held-out | live held-out | retention KL | flips | gate | released |", "|---" * 8 + "|"]
    for g in s["worker_gates"]:
        lines.append(_worker_gate_row(g))
    lines += ["", "## Reward hacking check\n", f"Training reward against held-out score; flagged when the gap widens by more "
              f"than {GAP_ALARM}.\n", "| worker | job | adapter version | training reward | held-out | gap | flag |",
              "|---" * 7 + "|"]
    for w in figures["hacking"]:
        for p in w["points"]:
            lines.append(f"| {w['worker']} | {w['job']} | {p['adapter_version']} | {p['train_reward']:.3f} | "
                         f"{p['heldout']:.3f} | {p['gap']:+.3f} | {'**widening**' if w['flag'] else ''} |")
    return "\n".join(lines) + "\n"


def _worker_gate_row(g: dict) -> str:
    flips = f"{g['flips']['right_to_wrong']} of {g['flips']['items']}" if g["flips"] else "not measured"
    kl = "not measured" if g["retention_kl"] is None else f"{g['retention_kl']:.4f}"
    released = ("**yes, ungated by the user**" if g["override"] else "yes") if g["released"] else "no"
    return (f"| {g['worker']} | v{g['version']} | {g['heldout']:.3f} | {g['live_heldout']:.3f} | {kl} | {flips} | "
            f"{gate_verdict(g)} | {released} |")
