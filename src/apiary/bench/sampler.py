"""Rollout sampling in int8 and bf16 against float32: tokens/s, how far each sampler is off the policy, memory.

    python -m apiary.bench.sampler [--batches 1,32] [--new-tokens 64] [--repeats 3] [--core DIR] [--quick] [--docs DIR]

A worker as the RL learner samples it: the core with a fresh LoRA adapter, float32 with the adapter
merged (the default sampler); int8 (`--sampler int8`: int8 weights with bfloat16 activations at few rows where
the CPU multiplies bfloat16 natively, models.bf16; else W8A8), W8A8 beside it (models.quantized), bf16 copies
(models.bf16; only where bfloat16 is native), each with the adapter's update merged in; int8 and bf16 decode their
one-token steps as models.llama_step, and int8_hf, the int8 sampler with transformers' step, shows what that gains. Same prompts, same
process; each timing follows one warm-up call, the samplers alternate `repeats` times and the best
of each is kept (a shared machine's noise only ever slows a run down). Every row writes exactly
`new_tokens` tokens (stop tokens off), temperature 1. Also measured: the time to calibrate the sampler
(once per learner) and to enter each sampler (quantise or copy the weights with the adapter's update, at each
rollout); the mismatch, the mean per-token KL(sampler || float32) on each sampler's own samples, all rows at
once and one row at a time (the k3 estimate, as the learner's `sampler_kl`); and the process's peak resident memory.
Writes docs/sampler.json and the "Rollout sampling: int8 and bf16 against float32" section of docs/benchmarks.md.
`--quick`: a tiny random core, batches 1 and 2, 4 tokens, one repeat; writes only where --docs says.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from apiary.learners.anchor import anchor_prompts
from apiary.learners.grpo import k3_kl
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.core import Core, load_core
from apiary.models.generate import SamplingParams, generate, sample
from apiary.models.logprobs import completion_logprobs
from apiary.models.prompt_format import prompt_ids
from apiary.models.bf16 import INT8_BELOW, BF16Linear, BF16Sampler, bf16_sampler, int8_sampler, update_autocast
from apiary.models.quantized import int8_sampler as w8a8_sampler

TITLE = "Rollout sampling: int8 and bf16 against float32"


def _prompts(core: Core, batch: int) -> list[list[int]]:
    questions = anchor_prompts()
    return [prompt_ids(core.tokenizer, [{"role": "user", "content": questions[i % len(questions)]}]) for i in range(batch)]


def tokens_per_s(model, prompts: list[list[int]], new_tokens: int, pad_id: int) -> float:
    """Sampled tokens/s, exactly `new_tokens` per prompt, after one short warm-up call."""
    run = lambda n: generate(model, prompts, 1, SamplingParams(max_new_tokens=n), [], pad_id,  # noqa: E731
                             torch.Generator().manual_seed(0))
    run(2)
    began = time.perf_counter()
    out = run(new_tokens)
    return sum(len(c) for c in out) / (time.perf_counter() - began)


def sampler_kl(model, sampler, core: Core, prompts: list[list[int]], new_tokens: int, rows: int | None = None) -> float:
    """Mean per-token KL(sampler || float32) estimate (k3) on replies the sampler wrote, at temperature 1,
    `rows` prompts at a time (None: all at once)."""
    pad, rows = core.tokenizer.pad_token_id, rows or len(prompts)
    with sampler.sampling():
        samples = [s for at in range(0, len(prompts), rows)
                   for s in sample(model, prompts[at:at + rows], 1, SamplingParams(max_new_tokens=new_tokens),
                                   core.stop_token_ids, pad, torch.Generator().manual_seed(at))]
    kept = [(i, s) for i, s in enumerate(samples) if s.tokens]
    with torch.no_grad():
        learner_C_L, mask_C_L = completion_logprobs(model, prompts, [s.tokens for _, s in kept], [i for i, _ in kept], pad)
    sampler_C_L = torch.zeros_like(learner_C_L)
    for row, (_, s) in enumerate(kept):
        sampler_C_L[row, : len(s.logprobs)] = torch.tensor(s.logprobs)
    return float(k3_kl(sampler_C_L, learner_C_L, mask_C_L).sum() / mask_C_L.sum())


def update_seconds(model, core: Core, autocast: bool, repeats: int) -> float:
    """Best time of one RL-sized forward and backward (16 prompts x 4 replies of 24 tokens, the adapter's
    gradients), in float32 or under bfloat16 autocast (models.bf16.update_autocast)."""
    generator, pad = torch.Generator().manual_seed(0), core.tokenizer.pad_token_id
    prompts = _prompts(core, 16)
    replies = [torch.randint(100, 5000, (24,), generator=generator).tolist() for _ in range(64)]
    best = float("inf")
    model.train()
    for attempt in range(repeats + 1):  # the first is a warm-up
        began = time.perf_counter()
        with update_autocast(model.device, autocast):
            logprobs_C_L, mask_C_L = completion_logprobs(model, prompts, replies, [i % 16 for i in range(64)], pad)
        (-(logprobs_C_L * mask_C_L).sum() / mask_C_L.sum()).backward()
        if attempt:
            best = min(best, time.perf_counter() - began)
        model.zero_grad(set_to_none=True)
    model.eval()
    return best


def _samplers(model, core: Core) -> tuple[dict, float]:
    """The fast samplers this machine runs and the W8A8 sampler's calibration time: int8 (`--sampler int8`: int8
    weights with bfloat16 activations where bfloat16 is native, else W8A8), where they differ the same int8 with
    transformers' forward for every step (int8_hf: what models.llama_step gains) and W8A8 itself, and bf16 where it
    is native."""
    samplers = {"int8": int8_sampler(model, core.tokenizer)}
    began = time.perf_counter()
    if isinstance(samplers["int8"], BF16Sampler):
        samplers["int8_hf"] = BF16Sampler(model, INT8_BELOW, fast_steps=False)
        samplers["w8a8"] = w8a8_sampler(model, core.tokenizer)
    prepare_seconds = time.perf_counter() - began
    samplers["bf16"] = bf16_sampler(model)
    samplers = {name: s for name, s in samplers.items() if s is not None}
    if not samplers:
        raise SystemExit("neither int8 nor bf16 sampling is available here: nothing to compare")
    return samplers, prepare_seconds


def run(core: Core, batches: tuple[int, ...] = (1, 32), new_tokens: int = 64, repeats: int = 3) -> dict:
    model = adapters.attach(core.model, LoraSpec())
    pad = core.tokenizer.pad_token_id
    try:
        samplers, prepare_seconds = _samplers(model, core)
        rows, enter = [], dict.fromkeys(samplers, float("inf"))
        for batch in batches:
            prompts, best = _prompts(core, batch), dict.fromkeys(["float32", *samplers], 0.0)
            for _ in range(repeats):
                with adapters.merged(model):
                    best["float32"] = max(best["float32"], tokens_per_s(model, prompts, new_tokens, pad))
                for name, sampler in samplers.items():
                    entered = time.perf_counter()
                    with sampler.sampling():
                        for twin in (m for m in model.modules() if isinstance(m, BF16Linear) and m.int8_below):
                            twin.int8_weights()  # made at the first product of few rows: counted as entering
                        enter[name] = min(enter[name], time.perf_counter() - entered)
                        best[name] = max(best[name], tokens_per_s(model, prompts, new_tokens, pad))
            rows.append({"batch": batch, **{f"{name}_tokens_per_s": v for name, v in best.items()},
                         **{f"{name}_speedup": best[name] / best["float32"] for name in samplers}})
            print(f"  batch {batch:3d}: " + ", ".join(f"{name} {v:7.1f} tok/s" for name, v in best.items()), flush=True)
        kls = {name: sampler_kl(model, s, core, _prompts(core, max(batches)), new_tokens) for name, s in samplers.items()}
        kls_one_row = {name: sampler_kl(model, s, core, _prompts(core, 8), new_tokens, rows=1) for name, s in samplers.items()}
        update = {"float32": update_seconds(model, core, False, repeats)}
        if "bf16" in samplers:
            update["bf16"] = update_seconds(model, core, True, repeats)
    finally:
        adapters.detach(model)
    return {"new_tokens": new_tokens, "repeats": repeats, "threads": torch.get_num_threads(), "samplers": list(samplers),
            "rows": rows, "sampler_kl": kls, "sampler_kl_one_row": kls_one_row, "kl_rows": max(batches), "update_seconds": update, "prepare_seconds": prepare_seconds, "enter_seconds": enter,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def section(result: dict, command: str, core_name: str) -> str:
    from apiary.bench.report import machine

    names = result["samplers"]
    rows = "\n".join(f"| {r['batch']} | {r['float32_tokens_per_s']:.1f} | "
                     + " | ".join(f"{r[f'{n}_tokens_per_s']:.1f} ({r[f'{n}_speedup']:.2f}x)" for n in names) + " |"
                     for r in result["rows"])
    missing = "" if "bf16" in names else " bf16 was not measured: this CPU has no native bfloat16 (AVX512-BF16 or AMX)."
    return (f"## {TITLE}\n\nCommand: `{command}`\nMachine: {machine()}. Core: {core_name} with a fresh LoRA adapter; "
            f"{result['new_tokens']} new tokens per row, temperature 1, stop tokens off, best of {result['repeats']} "
            "alternating runs. float32: the adapter merged (the default sampler); every other sampler has the adapter's "
            "update merged into its copies of the weights at each rollout. int8 (`--sampler int8`): where bfloat16 is "
            f"native, products of fewer than {INT8_BELOW} rows multiply int8 weights (per output channel) with bfloat16 "
            "activations and larger ones bfloat16 copies (packed in oneDNN's layout where torch has it, "
            "models.bf16_linear), every linear layer and the output projection (models.bf16); "
            "elsewhere W8A8. w8a8: the core's linear layers but down_proj in int8 with per-token int8 activations "
            "(SmoothQuant, models.quantized). bf16: every linear layer and the output projection copied to bfloat16 "
            "(models.bf16). int8 and bf16 decode their one-token steps without transformers' per-layer machinery "
            "(models.llama_step: fused q/k/v and gate/up products, the KV cache written in place); int8_hf: the int8 "
            f"sampler with transformers' forward for every step.{missing}\n\n"
            "| batch | float32 tokens/s | " + " | ".join(f"{n} tokens/s (x float32)" for n in names) + " |\n|"
            + " --- |" * (2 + len(names)) + "\n" + rows + "\n\n"
            f"Mismatch, the mean per-token KL(sampler || float32) on the sampler's own replies, {result['kl_rows']} rows "
            "at once / 8 prompts one row at a time: "
            + ", ".join(f"{n} {result['sampler_kl'][n]:.4f} / {result['sampler_kl_one_row'][n]:.4f}" for n in names)
            + " (the learner reports the same estimate as `sampler_kl` and corrects its loss by truncated importance "
            f"sampling, GRPOConfig.is_cap). Calibrating W8A8: {result['prepare_seconds']:.1f} s once per learner; "
            "entering a sampler at each rollout (quantising or copying the weights with the adapter's update): "
            + ", ".join(f"{n} {result['enter_seconds'][n]:.2f} s" for n in names)
            + ". One RL-sized update (forward and backward of 16 prompts x 4 replies of 24 tokens, the adapter's "
            "gradients): " + ", ".join(f"{n} {v:.2f} s" for n, v in result["update_seconds"].items())
            + (f" ({result['update_seconds']['float32'] / result['update_seconds']['bf16']:.2f}x under bfloat16 autocast)"
               if "bf16" in result["update_seconds"] else "")
            + f". Peak resident memory of the process: {result['peak_rss_mb']:.0f} MB.\n")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--core", default=None, help="the core (default: the bundled one; --quick: a tiny random one)")
    parser.add_argument("--quick", action="store_true", help="a check that it runs: tiny core, batches 1 and 2, 4 tokens")
    parser.add_argument("--docs", type=Path, default=None, help="where benchmarks.md and sampler.json go (default docs/)")
    args = parser.parse_args(argv)
    from apiary.bench.kill_trials import tiny_core
    from apiary.bench.report import DOCS, core_label, publish

    batches = (1, 2) if args.quick else tuple(int(b) for b in args.batches.split(","))
    new_tokens, repeats = (4, 1) if args.quick else (args.new_tokens, args.repeats)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="apiary-sampler-bench-") as scratch:
        core_dir = args.core or (str(tiny_core(Path(scratch) / "core")) if args.quick else None)
        result = run(load_core(core_dir), batches, new_tokens, repeats)
    text = section(result, "python -m apiary.bench.sampler " + " ".join(argv if argv is not None else sys.argv[1:]),
                   core_label(args.core, args.quick))
    publish(TITLE, text, result, "sampler.json", args.docs or (None if args.quick else DOCS))
    return result


if __name__ == "__main__":
    main()
