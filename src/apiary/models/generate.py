"""Chat formatting and batched generation: prompts in, completions out, through the one decoder
(`models/decoder.py`) with every row admitted at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from transformers import PreTrainedModel

from apiary.models.decoder import Request, decode
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
) -> list[Sample]:
    """`generate`, keeping each token's log-probability under the sampling model (temperature 1, before
    top-p): what a learner compares with its own to see how far the sampler is off its policy."""
    return [Sample(request.tokens, request.logprobs) for request in _decode(
        model, prompts, samples_per_prompt, params, stop_ids, pad_id, generator, done, logprobs=True)]


@torch.inference_mode()
def _decode(model, prompts: list[list[int]], samples_per_prompt: int, params: SamplingParams, stop_ids: list[int],
            pad_id: int, generator: torch.Generator | None, done, logprobs: bool) -> list[Request]:
    requests = [Request(prompt=prompt, max_new_tokens=params.max_new_tokens, temperature=params.temperature,
                        top_p=params.top_p, stop_ids=tuple(stop_ids), done=done, logprobs=[] if logprobs else None)
                for prompt in prompts for _ in range(samples_per_prompt)]
    if params.max_new_tokens > 0:
        decode(model, requests, pad_id, generator)
    return requests
