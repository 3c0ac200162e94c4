"""Chat formatting and batched generation: prompts in, completions out, through the one decoder
(`models/decoder.py`) with every row admitted at once. `sample(..., keep_cache=True)` and `resume` let a
multi-turn player go on from each reply's KV cache instead of reading the conversation again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from transformers import PreTrainedModel

from apiary.models.decoder import Request, RunningBatch, decode
from apiary.models.prefix import RowCache, extend
from apiary.models.prompt_format import end_of_turn_id, prompt_ids, reply_ids  # noqa: F401  (callers import them here too)


@dataclass
class SamplingParams:
    max_new_tokens: int = 32
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0


@dataclass
class Sample:
    """One sampled completion and each of its tokens' log-probability under the model that sampled it."""

    tokens: list[int]
    logprobs: list[float]
    cache: RowCache | None = None  # kept when asked: the row's conversation up to, not including, its last token


def generate(
    model: PreTrainedModel,
    prompts: list[list[int]],
    samples_per_prompt: int,
    params: SamplingParams,
    stop_ids: list[int],
    pad_id: int,
    generator: torch.Generator | None = None,
    done: Callable[[list[int]], bool] | None = None,
) -> list[list[int]]:
    """Sample `samples_per_prompt` completions for each prompt, returned prompt-major.

    A completion holds the generated token ids, including its stop token when one was emitted.
    A row also ends early when `done(its tokens so far)` says so.
    """
    return [request.tokens for request in _decode(model, prompts, samples_per_prompt, params, stop_ids, pad_id,
                                                  generator, done, logprobs=False)]


def sample(
    model: PreTrainedModel,
    prompts: list[list[int]],
    samples_per_prompt: int,
    params: SamplingParams,
    stop_ids: list[int],
    pad_id: int,
    generator: torch.Generator | None = None,
    done: Callable[[list[int]], bool] | None = None,
    keep_cache: bool = False,
) -> list[Sample]:
    """`generate`, keeping each token's log-probability under the sampling model (temperature 1, before
    top-p): what a learner compares with its own to see how far the sampler is off its policy; with
    `keep_cache`, also each row's KV cache as its reply ended, for `resume`."""
    return [Sample(request.tokens, request.logprobs, request.cache) for request in _decode(
        model, prompts, samples_per_prompt, params, stop_ids, pad_id, generator, done, logprobs=True, keep_cache=keep_cache)]


@torch.inference_mode()
def resume(model: PreTrainedModel, caches: list[RowCache], suffixes: list[list[int]], params: SamplingParams,
           stop_ids: list[int], pad_id: int, generator: torch.Generator | None = None,
           done: Callable[[list[int]], bool] | None = None) -> list[Sample]:
    """One sample per kept row: each row reads its `suffixes` (its last reply's last token and what came
    after it) on top of its cache, then replies; each Sample keeps its row's cache again."""
    requests = _requests([[] for _ in caches], 1, params, stop_ids, done, logprobs=True, keep_cache=True)
    batch = RunningBatch(model, pad_id, generator)
    batch.join(requests, extend(model, caches, suffixes, pad_id))
    while batch.rows:
        batch.step()
    return [Sample(r.tokens, r.logprobs, r.cache) for r in requests]


@torch.inference_mode()
def _decode(model, prompts: list[list[int]], samples_per_prompt: int, params: SamplingParams, stop_ids: list[int],
            pad_id: int, generator: torch.Generator | None, done, logprobs: bool, keep_cache: bool = False) -> list[Request]:
    requests = _requests(prompts, samples_per_prompt, params, stop_ids, done, logprobs, keep_cache)
    if params.max_new_tokens > 0:
        decode(model, requests, pad_id, generator)
    return requests


def _requests(prompts: list[list[int]], samples_per_prompt: int, params: SamplingParams, stop_ids: list[int], done,
              logprobs: bool, keep_cache: bool) -> list[Request]:
    return [Request(prompt=prompt, max_new_tokens=params.max_new_tokens, temperature=params.temperature,
                    top_p=params.top_p, stop_ids=tuple(stop_ids), done=done, logprobs=[] if logprobs else None,
                    keep_cache=keep_cache)
            for prompt in prompts for _ in range(samples_per_prompt)]
