"""Sampling throughput against plain `transformers.generate` and against what the machine allows.

Both paths sample (temperature 1, no top-k/top-p) for each of `batch` different prompts, same
prompts, same process, timed after one warm-up call each, two ways: exactly `new_tokens` tokens per
prompt (stop tokens off on both sides, so both do the same work), and with stop tokens on (up to
`stop_new_tokens`; tokens counted up to each row's stop token: what a caller gets). The limits:
- compute bound: measured float32 matmul FLOP/s of this machine over 2 x parameters FLOPs per token
  (attention over the short context is left out, which flatters the bound slightly);
- bandwidth bound: each decoding step reads every weight once, so tokens/s <= batch x measured
  memory bandwidth / weight bytes.
Optionally a llama.cpp path (llama-cpp-python, if installed, on a GGUF of the core) at batch 1.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from apiary.learners.anchor import anchor_prompts
from apiary.models.core import Core, bundled_gguf_path
from apiary.models.generate import SamplingParams, generate, prompt_ids


def matmul_flops(n: int = 1024, repeats: int = 10) -> float:
    """Float32 FLOP/s of an n x n matmul on this CPU, best of `repeats`."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n ** 3 / best


def memory_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """Bytes/s of a large tensor copy (read + write), best of `repeats`."""
    src = torch.ones(megabytes * 2 ** 20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = min(_timed(lambda: dst.copy_(src)) for _ in range(repeats))
    return 2 * src.numel() * 4 / best


def _timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def _prompts(core: Core, batch: int) -> list[list[int]]:
    questions = anchor_prompts()
    return [prompt_ids(core.tokenizer, [{"role": "user", "content": questions[i % len(questions)]}]) for i in range(batch)]


def apiary_tokens_per_s(core: Core, prompts: list[list[int]], new_tokens: int, stop: bool = False) -> float:
    """Sampled tokens/s; `stop`: rows end at a stop token (counted up to it), else exactly `new_tokens` each."""
    params = SamplingParams(max_new_tokens=new_tokens, temperature=1.0)
    stop_ids = core.stop_token_ids if stop else []
    run = lambda: generate(core.model, prompts, 1, params, stop_ids, core.tokenizer.pad_token_id,  # noqa: E731
                           torch.Generator().manual_seed(0))
    run()
    began = time.perf_counter()
    out = run()
    return sum(len(c) for c in out) / (time.perf_counter() - began)


def hf_tokens_per_s(core: Core, prompts: list[list[int]], new_tokens: int, stop: bool = False) -> float:
    """The same with `transformers.generate` (which keeps stepping finished rows until every row is done)."""
    batch = core.tokenizer.pad([{"input_ids": p} for p in prompts], return_tensors="pt")
    kwargs = dict(max_new_tokens=new_tokens, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                  pad_token_id=core.tokenizer.pad_token_id)
    kwargs |= {"eos_token_id": core.stop_token_ids} if stop else {"min_new_tokens": new_tokens}
    with torch.inference_mode():
        core.model.generate(**batch, **kwargs)
        began = time.perf_counter()
        out = core.model.generate(**batch, **kwargs)
    seconds = time.perf_counter() - began
    new = out[:, batch["input_ids"].shape[1]:].tolist()
    return sum(_useful(row, core.stop_token_ids) if stop else len(row) for row in new) / seconds


def _useful(row: list[int], stop_ids: list[int]) -> int:
    """Tokens up to and including the first stop token (the rest is padding of a finished row)."""
    return next((i + 1 for i, t in enumerate(row) if t in stop_ids), len(row))


def llama_cpp_tokens_per_s(gguf: Path, prompt: str, stop_ids: list[int], new_tokens: int, threads: int) -> float | None:
    """Batch-1 sampling tokens/s of llama.cpp on `gguf` (stop tokens banned, so exactly `new_tokens`), or None
    if llama-cpp-python is not installed."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(gguf), n_ctx=512, n_threads=threads, n_batch=512, verbose=False, seed=0)
    kwargs = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, stop=[], logit_bias={t: -1e9 for t in stop_ids})
    llm.create_completion(prompt, max_tokens=4, **kwargs)
    began = time.perf_counter()
    out = llm.create_completion(prompt, max_tokens=new_tokens, **kwargs)
    return out["usage"]["completion_tokens"] / (time.perf_counter() - began)


def run(core: Core, batches: tuple[int, ...] = (1, 8, 32), new_tokens: int = 64, llama_cpp: bool = True,
        stop_new_tokens: int = 256) -> dict:
    parameters = sum(p.numel() for p in core.model.parameters())
    flops, bandwidth = matmul_flops(), memory_bandwidth()
    weight_bytes = sum(p.numel() * p.element_size() for p in core.model.parameters())
    compute_bound = flops / (2 * parameters)
    rows = []
    for batch in batches:
        prompts = _prompts(core, batch)
        ours, plain = apiary_tokens_per_s(core, prompts, new_tokens), hf_tokens_per_s(core, prompts, new_tokens)
        bound = min(compute_bound, batch * bandwidth / weight_bytes)
        ours_stop, plain_stop = (apiary_tokens_per_s(core, prompts, stop_new_tokens, stop=True),
                                 hf_tokens_per_s(core, prompts, stop_new_tokens, stop=True))
        rows.append({"batch": batch, "apiary_tokens_per_s": ours, "hf_generate_tokens_per_s": plain,
                     "speedup_vs_hf": ours / plain, "bound_tokens_per_s": bound, "fraction_of_bound": ours / bound,
                     "with_stops": {"apiary_tokens_per_s": ours_stop, "hf_generate_tokens_per_s": plain_stop,
                                    "speedup_vs_hf": ours_stop / plain_stop}})
        print(f"  batch {batch:3d}: apiary {ours:7.1f} tok/s, transformers.generate {plain:7.1f} tok/s, "
              f"bound {bound:7.0f} tok/s; with stops: {ours_stop:7.1f} vs {plain_stop:7.1f}", flush=True)
    gguf = bundled_gguf_path() if llama_cpp else None
    prompt = core.tokenizer.apply_chat_template([{"role": "user", "content": anchor_prompts()[0]}], tokenize=False,
                                                add_generation_prompt=True)
    llama = (llama_cpp_tokens_per_s(gguf, prompt, core.stop_token_ids, new_tokens, torch.get_num_threads())
             if gguf is not None else None)
    return {"new_tokens": new_tokens, "stop_new_tokens": stop_new_tokens, "parameters": parameters,
            "weight_bytes": weight_bytes, "matmul_flops_per_s": flops, "memory_bytes_per_s": bandwidth, "compute_bound_tokens_per_s": compute_bound,
            "threads": torch.get_num_threads(), "rows": rows,
            "llama_cpp": None if llama is None else {"gguf": gguf.name, "batch": 1, "tokens_per_s": llama}}
