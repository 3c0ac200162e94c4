"""Tables, headline figures and the plot of the continual benchmark (bench.continual)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAIVE = (("sequential", "naive sequential LoRA"), ("sequential_full", "naive sequential full fine-tuning"))


def _naive_row(fig: dict, key: str, label: str) -> dict:
    seq, base = fig[key], fig["base"]
    return {"model": label, "final": seq["R"][-1], "acc": seq["transfer"]["acc"], "bwt": seq["transfer"]["bwt"],
            "fwt": seq["transfer"]["fwt"], "retention_kl": seq["retention_kl"], "flips": seq["flips"],
            "gain_kept": [(seq["R"][-1][i] - base[i]) / (seq["R"][i][i] - base[i]) if seq["R"][i][i] > base[i] else None
                          for i in range(len(fig["jobs"]))]}


def summary_rows(fig: dict) -> list[dict]:
    """One row per final model: score per job, ACC, BWT (final minus learned score), retention."""
    learned = [fig["worker_rows"][i][i] for i in range(len(fig["jobs"]))]
    rows = []
    for method, r in fig["consolidated"].items():
        final = [next(s["candidate"] for s in r["jobs"] if s["job"] == job) for job in fig["jobs"]]
        gains = [next(s["gain_kept"] for s in r["jobs"] if s["job"] == job) for job in fig["jobs"]]
        rows.append({"model": f"hive: {method}", "final": final, "acc": sum(final) / len(final),
                     "bwt": sum(f - w for f, w in zip(final, learned)) / len(final), "gain_kept": gains,
                     "retention_kl": r["retention_kl"], "flips": r["flips"], "gate": "pass" if r["passed"] else
                     "refused: " + "; ".join(r["reasons"])})
    return rows + [_naive_row(fig, key, label) for key, label in NAIVE if key in fig]


def mean_gain(gains: list[float | None]) -> float | None:
    """Average normalised gain over the jobs whose worker gained (None entries have no gain to keep)."""
    kept = [g for g in gains if g is not None]
    return sum(kept) / len(kept) if kept else None


def headline(fig: dict) -> dict:
    """The issue's two targets: distillation's flips vs naive LoRA's; distillation's gain vs the best merge."""
    by_model = {r["model"]: r for r in summary_rows(fig)}
    flips = {name: by_model[name]["flips"]["right_to_wrong"] for name in by_model}
    distill, naive_lora = flips.get("hive: distill"), flips.get("naive sequential LoRA")
    gains = {m: mean_gain(by_model[f"hive: {m}"]["gain_kept"]) for m in fig["consolidated"]}
    merges = {m: g for m, g in gains.items() if m not in ("distill", "full") and g is not None}  # full: distillation too
    best_merge = max(merges, key=merges.get) if merges else None
    full = by_model.get("naive sequential full fine-tuning")
    # issue 16's target: a released candidate keeping >= 0.9 of every worker's gain, with fewer flips than naive
    # sequential full fine-tuning and a higher ACC
    meets = [m for m in fig["consolidated"] if full is not None and by_model[f"hive: {m}"]["gate"] == "pass"
             and all(g is None or g >= 0.9 for g in by_model[f"hive: {m}"]["gain_kept"])
             and flips[f"hive: {m}"] < flips[full["model"]] and by_model[f"hive: {m}"]["acc"] > full["acc"]]
    return {"flips_right_to_wrong": flips, "retention_items": next(iter(by_model.values()))["flips"]["items"],
            "meets_target": meets,
            "flips_ratio_distill_vs_naive_lora": distill / naive_lora if naive_lora and distill is not None else None,
            "mean_normalised_gain": gains, "best_merge": best_merge,
            "distill_minus_best_merge": (gains["distill"] - merges[best_merge])
            if best_merge and gains.get("distill") is not None else None}


def plot(fig: dict, path: Path) -> None:
    jobs, workers = fig["jobs"], list(fig["workers"])
    labels = ["base"] + [f"worker {w}" for w in workers] + [f"seq LoRA after {j}" for j in jobs if "sequential" in fig] + \
             [f"seq full FT after {j}" for j in jobs if "sequential_full" in fig] + [f"hive {m}" for m in fig["consolidated"]]
    naive = fig.get("sequential", {}).get("R", []) + fig.get("sequential_full", {}).get("R", [])
    matrix = [fig["base"]] + fig["worker_rows"] + naive + [
        [next(s["candidate"] for s in r["jobs"] if s["job"] == job) for job in jobs] for r in fig["consolidated"].values()]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 6.5), gridspec_kw={"width_ratios": [1.1, 1]})
    image = left.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    left.set_xticks(range(len(jobs)), jobs)
    left.set_yticks(range(len(labels)), labels)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            left.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black", fontsize=8)
    left.set_title("held-out score (rows: models, in the order they were made)")
    figure.colorbar(image, ax=left, fraction=0.046)
    rows = summary_rows(fig) + [{"model": f"worker {w}", **{k: fig["workers"][w][k] for k in ("retention_kl", "flips")}}
                                for w in workers]
    right.barh([r["model"] for r in rows], [100 * r["flips"]["right_to_wrong"] / r["flips"]["items"] for r in rows],
               color="tab:red")
    right.axvline(2, color="black", linestyle="--", linewidth=1)
    right.set_xlabel("retention items flipped right to wrong (%); dashed: the 2% bound")
    right.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def markdown(fig: dict, title: str, command: str, png: str) -> str:
    jobs, rows = fig["jobs"], summary_rows(fig)
    head, budget = " | ".join(jobs), fig["budget_per_job"]
    amount = f"{budget['minutes']:g} min" if "minutes" in budget else f"{budget['steps']} steps"
    top = headline(fig)
    lines = [f"## {title}\n",
             f"`{command}` ({fig['wall_seconds'] / 60:.0f} min in all on {fig['machine']}). Jobs: " +
             ", ".join(f"`{spec} {' '.join(o)}`" for spec, o in fig["job_specs"]) + f"; {amount} of RL per job "
             "for each worker (the demo's learners: rl, with distillation back toward the core after every 5 steps "
             "where the run used it) and for each stage of both naive baselines (plain GRPO; full fine-tuning at "
             f"learning rate {fig['sequential_full']['learning_rate']:g}). Distillation: {fig['distill_steps']} steps. "
             "Held-out scores are greedy.\n",
             f"![continual]({png})\n",
             f"| model | {head} | ACC | BWT | gain kept per job | retention KL | flips right to wrong | gate |",
             "|---" * (len(jobs) + 7) + "|",
             f"| base core | {' | '.join(f'{b:.2f}' for b in fig['base'])} | {sum(fig['base']) / len(jobs):.2f} | | | 0 | 0 | |"]
    for w, row in zip(fig["workers"], fig["worker_rows"]):
        info = fig["workers"][w]
        lines.append(f"| worker {w} | {' | '.join(f'{s:.2f}' for s in row)} | | | | {info['retention_kl']:.4f} | "
                     f"{info['flips']['right_to_wrong']} of {info['flips']['items']} | |")
    for r in rows:
        gains = ", ".join("-" if g is None else f"{g:.2f}" for g in r["gain_kept"])
        lines.append(f"| {r['model']} | {' | '.join(f'{s:.2f}' for s in r['final'])} | {r['acc']:.2f} | {r['bwt']:+.2f} | "
                     f"{gains} | {r['retention_kl']:.4f} | {r['flips']['right_to_wrong']} of {r['flips']['items']} | "
                     f"{r.get('gate', '')} |")
    ratio = top["flips_ratio_distill_vs_naive_lora"]
    gain_line = ", ".join(f"{m} {'-' if g is None else f'{g:.2f}'}" for m, g in top["mean_normalised_gain"].items())
    lines += ["", f"Flips right to wrong: distillation {top['flips_right_to_wrong'].get('hive: distill', '-')}, naive LoRA "
              f"{top['flips_right_to_wrong'].get('naive sequential LoRA', '- (not run)')}, naive full fine-tuning "
              f"{top['flips_right_to_wrong'].get('naive sequential full fine-tuning', '-')} of {top['retention_items']}: "
              f"ratio distillation / naive LoRA **{'-' if ratio is None else f'{ratio:.2f}'}** (target at most 0.20). "
              f"Average normalised gain (gain kept, over the jobs whose worker gained): {gain_line}. "
              "Candidates that pass the default gate, keep at least 0.9 of every worker's gain, and flip fewer items "
              "with a higher ACC than naive sequential full fine-tuning (issue 16's target): "
              f"**{', '.join(top['meets_target']) or 'none'}**.\n"]
    for key, label in ((k, v) for k, v in NAIVE if k in fig):
        seq = fig[key]
        lines += [f"{label}: forgetting matrix R[i][j] (row: after learning job i; GEM's ACC/BWT/FWT with the base "
                  f"core's scores as the reference): ACC {seq['transfer']['acc']:.2f}, BWT {seq['transfer']['bwt']:+.2f}, "
                  f"FWT {seq['transfer']['fwt']:+.2f}.", "", f"| after | {head} |", "|---" * (len(jobs) + 1) + "|"]
        lines += [f"| {jobs[i]} | {' | '.join(f'{s:.2f}' for s in row)} |" for i, row in enumerate(seq["R"])] + [""]
    return "\n".join(lines)
