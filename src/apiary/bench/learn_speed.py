"""How fast does a worker learn chain_sum (2 terms, 1 digit) on this CPU?

Runs the real learn loop (store, checkpoints and all) with the demo's GRPO settings on the bundled
core, evaluating the held-out split every few steps. Learning time counts sampling and updates only;
the periodic evals are excluded (they are measurement, not learning). Also measures sampling
throughput of apiary's generation path against plain `transformers.generate` on the same prompts.

    python -m apiary.bench.learn_speed [--minutes 5] [--eval-every 3] [--stop-when-decided]

Writes docs/benchmarks.md (its learn-speed section), docs/learn_speed[_stop_when_decided].json and .png.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from apiary.evals.heldout import evaluate  # noqa: E402
from apiary.hive.recipes import DEMO  # noqa: E402
from apiary.hive.training import Budget, learn  # noqa: E402
from apiary.hive.worker import worker_on  # noqa: E402
from apiary.jobs.spec import load_job  # noqa: E402
from apiary.models import adapters  # noqa: E402
from apiary.models.core import load_core  # noqa: E402
from apiary.models.generate import SamplingParams, generate, prompt_ids  # noqa: E402
from apiary.store.store import Store  # noqa: E402
from apiary.bench.report import DOCS, machine, write_section  # noqa: E402

TARGET = 0.80


def sampling_throughput(core, job, prompts_n: int = 16, group: int = 8, max_new: int = 16) -> dict:
    """Completion tokens/s of apiary's sampler and of transformers.generate, same prompts and budget."""
    tok = core.tokenizer
    tasks = job.source.train(0, prompts_n)
    prompts = [prompt_ids(tok, job.messages(t)) for t in tasks]
    params = SamplingParams(max_new_tokens=max_new, temperature=1.0)
    start = time.perf_counter()
    ours = generate(core.model, prompts, group, params, core.stop_token_ids, tok.pad_token_id, torch.Generator().manual_seed(0))
    ours_s = time.perf_counter() - start
    batch = tok.pad([{"input_ids": p} for p in prompts for _ in range(group)], return_tensors="pt")
    start = time.perf_counter()
    with torch.no_grad():
        out = core.model.generate(**batch, max_new_tokens=max_new, do_sample=True, temperature=1.0, top_k=0,
                                  eos_token_id=core.stop_token_ids, pad_token_id=tok.pad_token_id)
    hf_s = time.perf_counter() - start
    new = out[:, batch["input_ids"].shape[1]:]
    hf_tokens = int(sum(_length(row.tolist(), core.stop_token_ids) for row in new))
    ours_tokens = sum(len(c) for c in ours)
    return {"batch": prompts_n * group, "apiary_tokens_per_s": ours_tokens / ours_s, "hf_generate_tokens_per_s": hf_tokens / hf_s}


def _length(row: list[int], stop: list[int]) -> int:
    for i, t in enumerate(row):
        if t in stop:
            return i + 1
    return len(row)


def learning_curve(core, job, config, minutes: float, eval_every: int) -> dict:
    curve = []
    base = evaluate(core.model, core.tokenizer, job, core.stop_token_ids)
    curve.append({"step": 0, "learn_seconds": 0.0, "heldout": base.score, "episodes": 0})
    clock = {"seconds": 0.0, "episodes": 0}

    def on_step(step, stats, model):
        clock["seconds"] += stats.generate_seconds + stats.train_seconds
        clock["episodes"] += stats.extra["episodes"]
        if step % eval_every == 0:
            score = evaluate(model, core.tokenizer, job, core.stop_token_ids).score
            curve.append({"step": step, "learn_seconds": clock["seconds"], "heldout": score, "episodes": clock["episodes"]})
            print(f"step {step:3d}  learn {clock['seconds']:6.1f} s  held-out {score:.3f}", flush=True)

    with tempfile.TemporaryDirectory() as hive:
        store = Store(hive)
        model, run = learn(store, worker_on(store, "bench", job, core), Budget(minutes=minutes), config, on_step=on_step,
                           show_progress=False)
        if run.steps % eval_every:
            score = evaluate(model, core.tokenizer, job, core.stop_token_ids).score
            curve.append({"step": run.steps, "learn_seconds": run.seconds, "heldout": score, "episodes": run.episodes})
        adapters.detach(model)
    reached = next((p for p in curve if p["heldout"] >= TARGET), None)
    return {
        "curve": curve, "heldout_items": base.n, "steps": run.steps, "episodes": run.episodes,
        "seconds_to_target": reached["learn_seconds"] if reached else None,
        "best": max(p["heldout"] for p in curve),
        "generate_tokens_per_s": run.generated_tokens / max(run.generate_seconds, 1e-9),
        "train_tokens_per_s": run.trained_tokens / max(run.train_seconds, 1e-9),
        "generate_seconds": run.generate_seconds, "train_seconds": run.train_seconds,
    }


def plot(result: dict, path: Path) -> None:
    curve = result["learning"]["curve"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([p["learn_seconds"] for p in curve], [p["heldout"] for p in curve], marker="o", label="apiary GRPO")
    ax.axhline(TARGET, color="grey", linestyle="--", linewidth=1, label=f"target {TARGET}")
    ax.axvline(180, color="red", linestyle=":", linewidth=1, label="3 min")
    ax.set_xlabel("learning wall time (s), evals excluded")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("chain_sum (2 terms, 1 digit), SmolLM2-135M, 2 CPU cores")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_markdown(result: dict, command: str, title: str, png: str) -> None:
    learning, sampling = result["learning"], result["sampling"]
    rows = "\n".join(f"| {p['step']} | {p['episodes']} | {p['learn_seconds']:.0f} | {p['heldout']:.3f} |" for p in learning["curve"])
    reached = learning["seconds_to_target"]
    verdict = (f"reached {TARGET} held-out after **{reached:.0f} s** of learning" if reached is not None
               else f"did **not** reach {TARGET} (best {learning['best']:.3f})")
    section = f"""## {title}

Command: `{command}`
Machine: {result['machine']}. Core: bundled SmolLM2-135M-Instruct, float32. Held-out: {learning['heldout_items']} distinct
problems never trained on (the task has 200 in all). Settings: {result['config']}.

Result: {verdict} (target: 0.80 within 180 s). {learning['steps']} steps, {learning['episodes']} episodes.

| step | episodes | learning time (s) | held-out accuracy |
| --- | --- | --- | --- |
{rows}

![held-out accuracy against learning time]({png})

Where the time goes: sampling {learning['generate_seconds']:.0f} s at {learning['generate_tokens_per_s']:.0f} completion tokens/s;
updates {learning['train_seconds']:.0f} s at {learning['train_tokens_per_s']:.0f} trained completion tokens/s (forward + backward).
Sampling throughput at batch {sampling['batch']} (16 prompts x 8 samples, 16 new tokens): apiary
{sampling['apiary_tokens_per_s']:.0f} tokens/s, plain `transformers.generate` {sampling['hf_generate_tokens_per_s']:.0f} tokens/s,
same prompts, same process.
"""
    write_section(title, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--eval-every", type=int, default=3)
    parser.add_argument("--stop-when-decided", action="store_true", help="end samples once the scorer has decided")
    args = parser.parse_args()
    config = replace(DEMO.rl, stop_when_decided=args.stop_when_decided)
    suffix = "_stop_when_decided" if args.stop_when_decided else ""
    title = "Learning speed: chain_sum (2 terms, 1 digit)" + (", samples stopped once decided" if suffix else "")
    torch.manual_seed(0)
    core = load_core()
    _, spec, overrides = DEMO.workers[0]
    job = load_job(spec, overrides)
    result = {
        "machine": machine(),
        "config": config.__dict__,
        "sampling": sampling_throughput(core, job),
    }
    print(json.dumps(result["sampling"]), flush=True)
    result["learning"] = learning_curve(core, job, config, args.minutes, args.eval_every)
    DOCS.mkdir(exist_ok=True)
    (DOCS / f"learn_speed{suffix}.json").write_text(json.dumps(result, indent=2))
    plot(result, DOCS / f"learn_speed{suffix}.png")
    flag = " --stop-when-decided" if suffix else ""
    write_markdown(result, f"python -m apiary.bench.learn_speed --minutes {args.minutes:g} --eval-every {args.eval_every}{flag}",
                   title, f"learn_speed{suffix}.png")
    print(json.dumps({k: v for k, v in result["learning"].items() if k != "curve"}, indent=2))


if __name__ == "__main__":
    main()
