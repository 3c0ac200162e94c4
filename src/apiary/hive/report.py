"""`apiary report`: what the hive learned and forgot, as markdown plus PNG plots, from the store alone.

The analyses are computed in evals/ (curves, forgetting, reward_hacking); this module gathers them,
plots them and writes the Markdown.

- learning curves: each worker's mean training reward per step, with its held-out scores;
- forgetting matrix: held-out score of every core version (and each worker) on every job, as a heatmap;
- retention over core versions: KL to the base on the retention prompts and right-to-wrong flips;
- reward-hacking check: per worker, training reward against held-out score at each evaluated
  adapter version; a gap that widens by more than `gap_alarm` is flagged (jobs can score
  held-out answers with a different scorer than the training reward: `heldout_scorer`);
- every gate decision (core versions and workers' adapter versions) with its reasons, and every
  release a user made past the gate;
- feedback givers: per worker, each giver's agreement with the job's verifier and with the other
  givers, and which givers are flagged (their feedback is held back from learning: evals.givers).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from apiary.evals.curves import learning_curves  # noqa: E402
from apiary.evals.forgetting import forgetting_matrix  # noqa: E402
from apiary.evals.givers import FlagRule, hive_givers  # noqa: E402
from apiary.evals.reward_hacking import GAP_ALARM, reward_gaps  # noqa: E402
from apiary.hive.status import gate_verdict, status  # noqa: E402
from apiary.store.store import Store  # noqa: E402


def write_report(store: Store, out: Path, gap_alarm: float = GAP_ALARM) -> dict:
    """Write report.md and its PNGs to `out`; returns the figures it shows (for --json)."""
    out.mkdir(parents=True, exist_ok=True)
    figures = {"status": status(store), "curves": learning_curves(store), "matrix": forgetting_matrix(store),
               "hacking": reward_gaps(store, gap_alarm),
               "givers": {w: [g.figures() for g in givers] for w, givers in hive_givers(store).items()}}
    _plot_curves(figures["curves"], out / "learning_curves.png")
    _plot_matrix(figures["matrix"], out / "forgetting.png")
    if figures["status"]["core_versions"]:  # nothing to plot before the first consolidation
        _plot_retention(figures["status"]["core_versions"], out / "retention.png")
    (out / "report.md").write_text(_markdown(figures))
    return figures | {"files": sorted(str(p) for p in out.iterdir())}


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
    lines += ["", "## Core versions and retention\n"]
    if not s["core_versions"]:
        lines.append("No core versions yet: the workers stand on the base core (v0). `apiary consolidate` makes one.")
    else:
        lines += ["![retention](retention.png)\n",
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
            reward, gap = ("-", "-") if p["gap"] is None else (f"{p['train_reward']:.3f}", f"{p['gap']:+.3f}")
            lines.append(f"| {w['worker']} | {w['job']} | {p['adapter_version']} | {reward} | "
                         f"{p['heldout']:.3f} | {gap} | {'**widening**' if w['flag'] else ''} |")
    return "\n".join(lines + _givers_lines(figures["givers"])) + "\n"


def _givers_lines(givers: dict[str, list[dict]]) -> list[str]:
    """Per worker, each feedback giver's disagreement with the job's verifier and with the other givers."""
    rule = FlagRule()
    lines = ["", "## Feedback givers\n",
             "Disagreement of each giver's feedback with the job's verifier (its scorer; none for a multi-turn job or "
             "an episode with no known answer) and with other givers on the same episode. A giver is flagged, and their "
             f"feedback held back from learning, when at least {rule.min_items} of their items were checked and they "
             f"disagree at least {rule.margin:.0%} more often than the other givers pooled, beyond chance (one-sided "
             f"binomial test, p < {rule.alpha}).\n"]
    if not givers:
        return lines + ["No feedback yet."]
    lines += ["| worker | giver | feedback | verifier: wrong of checked | peers: disagree of checked | flagged |",
              "|---" * 6 + "|"]
    for worker, rows in givers.items():
        for g in rows:
            lines.append(f"| {worker} | {g['by']} | {g['feedback']} | {_share(g['disagreed'], g['checked'])} | "
                         f"{_share(g['peer_disagreed'], g['peer_checked'])} | "
                         f"{'**held back**: ' + g['reason'] if g['flagged'] else ''} |")
    return lines


def _share(k: int, n: int) -> str:
    return f"{k} of {n} ({k / n:.0%})" if n else "-"


def _worker_gate_row(g: dict) -> str:
    flips = f"{g['flips']['right_to_wrong']} of {g['flips']['items']}" if g["flips"] else "not measured"
    kl = "not measured" if g["retention_kl"] is None else f"{g['retention_kl']:.4f}"
    released = ("**yes, ungated by the user**" if g["override"] else "yes") if g["released"] else "no"
    return (f"| {g['worker']} | v{g['version']} | {g['heldout']:.3f} | {g['live_heldout']:.3f} | {kl} | {flips} | "
            f"{gate_verdict(g)} | {released} |")
