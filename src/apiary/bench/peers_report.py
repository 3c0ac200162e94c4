"""Markdown and plots of the TRL race and the generation suite (bench.trl_race, bench.generation)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _f(value, spec: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def race_plot(fig: dict, path: Path) -> None:
    figure, ax = plt.subplots(figsize=(6.4, 3.8))
    for side, label in (("apiary", "apiary GRPO"), ("trl", f"TRL {fig['trl_version']} GRPOTrainer")):
        curve = fig[side]["curve"]
        ax.plot([p["learn_seconds"] for p in curve], [p["heldout"] for p in curve], marker="o", label=label)
    ax.axhline(fig["race"]["target"], color="grey", linestyle="--", linewidth=1, label=f"target {fig['race']['target']}")
    ax.set_xlabel("learning wall time (s), evals excluded")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{fig['job']['name']}: same core, LoRA, steps and samples")
    ax.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def race_markdown(fig: dict, title: str, command: str, png: str) -> str:
    cfg, race = fig["config"], fig["race"]
    rows = []
    for side, label in (("apiary", "apiary"), ("trl", f"TRL {fig['trl_version']}")):
        r = fig[side]
        rows.append(f"| {label} | {r['steps']} | {r['wall_seconds']:.0f} | {_f(fig['seconds_to_level'][side], '.0f')} | "
                    f"{fig['best'][side]:.2f} | {fig['heldout_at_equal_wall'][side]:.2f} | "
                    f"{r['generate_tokens_per_s']:.0f} | {r['train_tokens_per_s']:.0f} |")
    level = (f"the target {race['target']}" if fig["target_reached_by_both"] else
             f"{fig['level']:.2f}, the best level both sides reached (the target {race['target']} was not reached by both)")
    noise = (f" **Caution:** {fig['level']:.2f} is within two standard errors ({fig['noise']:.2f}) of the shared starting "
             f"score {fig['apiary']['curve'][0]['heldout']:.2f}, so this ratio times a side that did not clearly learn; "
             "the same-steps ratio below is the sounder speed figure." if fig["level_within_noise"] else "")
    curves = "\n".join(f"| {side} | " + ", ".join(f"{p['step']}: {p['heldout']:.2f} @ {p['learn_seconds']:.0f}s"
                                                   for p in fig[side]["curve"]) + " |" for side in ("apiary", "trl"))
    return f"""## {title}

`{command}` on {fig['machine']}; versions {fig['versions']}. Job `{fig['job']['name']}`, {fig['heldout_items']} held-out
problems (greedy). Both sides: {race['steps']} optimizer steps of {cfg['prompts_per_step']} prompts x
{cfg['samples_per_prompt']} samples, at most {cfg['max_new_tokens']} completion tokens, temperature {cfg['temperature']},
LoRA rank 16 / alpha 32 on all linear layers, AdamW lr {cfg['learning_rate']:g} constant, grad-norm clip
{cfg['max_grad_norm']}, advantage = reward minus group mean, no KL. Same process, one after the other; evaluation
every {race['eval_every']} steps, excluded from both clocks.

Time compared at {level}: apiary / TRL wall-time ratio **{_f(fig['time_ratio_vs_trl'])}** (target: at most 0.5).{noise}
The same {race['steps']} steps took apiary {fig['apiary']['wall_seconds']:.0f} s and TRL {fig['trl']['wall_seconds']:.0f} s:
ratio **{fig['same_steps_wall_ratio']:.2f}**. Held-out at equal wall time ({fig['equal_wall_seconds']:.0f} s, the shorter run):
apiary {fig['heldout_at_equal_wall']['apiary']:.2f}, TRL {fig['heldout_at_equal_wall']['trl']:.2f}.

| side | steps | wall time (s) | time to {fig['level']:.2f} (s) | best held-out | held-out at equal time | generation tok/s | training tok/s |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Curves (step: held-out @ learning time):

| side | curve |
|---|---|
{curves}

![apiary and TRL learning curves]({png})
"""


def generation_plot(fig: dict, path: Path) -> None:
    rows = fig["rows"]
    batches = [r["batch"] for r in rows]
    figure, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(batches, [r["apiary_tokens_per_s"] for r in rows], marker="o", label="apiary generate")
    ax.plot(batches, [r["hf_generate_tokens_per_s"] for r in rows], marker="s", label="transformers generate")
    ax.plot(batches, [r["with_stops"]["apiary_tokens_per_s"] for r in rows], marker="o", linestyle=":", color="tab:blue",
            label="apiary, with stop tokens")
    ax.plot(batches, [r["with_stops"]["hf_generate_tokens_per_s"] for r in rows], marker="s", linestyle=":",
            color="tab:orange", label="generate, with stop tokens")
    ax.plot(batches, [r["bound_tokens_per_s"] for r in rows], linestyle="--", color="grey",
            label="bound: min(compute, batch x bandwidth)")
    if fig.get("llama_cpp"):
        ax.scatter([1], [fig["llama_cpp"]["tokens_per_s"]], marker="*", s=120, color="tab:red",
                   label=f"llama.cpp ({fig['llama_cpp']['gguf']})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch (different prompts, one sample each)")
    ax.set_ylabel("sampled tokens/s")
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def generation_markdown(fig: dict, title: str, command: str, png: str) -> str:
    rows = "\n".join(f"| {r['batch']} | {r['apiary_tokens_per_s']:.1f} | {r['hf_generate_tokens_per_s']:.1f} | "
                     f"{r['speedup_vs_hf']:.2f}x | {r['bound_tokens_per_s']:.0f} | {100 * r['fraction_of_bound']:.1f}% | "
                     f"{r['with_stops']['apiary_tokens_per_s']:.1f} | {r['with_stops']['hf_generate_tokens_per_s']:.1f} | "
                     f"{r['with_stops']['speedup_vs_hf']:.2f}x |" for r in fig["rows"])
    llama = fig.get("llama_cpp")
    llama_line = (f"llama.cpp (llama-cpp-python {fig['versions'].get('llama_cpp_python')}) on the bundled "
                  f"`{llama['gguf']}` (4-bit weights, so a quarter of float32's bytes or less) at batch 1: "
                  f"**{llama['tokens_per_s']:.1f} tokens/s**." if llama else
                  "llama.cpp: not measured (llama-cpp-python not installed, or a core other than the bundled one).")
    return f"""## {title}

`{command}` on {fig['machine']}. {fig['parameters'] / 1e6:.1f} M parameters, float32 ({fig['weight_bytes'] / 2 ** 20:.0f} MiB);
both paths sample at temperature 1 from the same prompts (general questions, one per row), one warm-up
call each, same process. Measured on this machine in the same run: float32 matmul
{fig['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s (1024 x 1024, best of 10), memory copy
{fig['memory_bytes_per_s'] / 1e9:.1f} GB/s. Compute bound: {fig['compute_bound_tokens_per_s']:.0f} tokens/s
(2 x parameters FLOPs per token); a decoding step reads every weight once, so the bound at batch b is
min(compute bound, b x bandwidth / weight bytes).

Left: exactly {fig['new_tokens']} tokens per prompt, the same work on both sides. Right: stop tokens on (at most
{fig['stop_new_tokens']} tokens), counting each row's tokens up to its stop token, what a caller receives;
`generate` keeps stepping finished rows until the batch's longest row is done, apiary drops them.

| batch | apiary tok/s | generate tok/s | apiary / generate | bound tok/s | apiary / bound | with stops: apiary | generate | apiary / generate |
|---|---|---|---|---|---|---|---|---|
{rows}

{llama_line}

![sampling throughput against the bound]({png})
"""
