"""Batched sampling and greedy decoding on top of the shared-prefix prefill.

Finished rows are dropped from the batch as soon as they emit a stop token, so a long
straggler does not make every other row pay for its tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from transformers import PreTrainedModel

from apiary.models.prefix import prefill
from apiary.models.prompt_format import end_of_turn_id, prompt_ids, reply_ids  # noqa: F401  (callers import them here too)


@dataclass
class SamplingParams:
    max_new_tokens: int = 32
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0


def pick_tokens(logits_B_V: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    if params.temperature <= 0:
        return logits_B_V.argmax(-1)
    rows = logits_B_V.shape[0]
    return sample_rows(logits_B_V, torch.full((rows,), params.temperature), torch.full((rows,), params.top_p), generator)


def sample_rows(logits_B_V: torch.Tensor, temperature_B: torch.Tensor, top_p_B: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
    """One token per row, each row with its own temperature (0: greedy) and top-p."""
    tokens_B = logits_B_V.argmax(-1)
    sampled = (temperature_B > 0).nonzero().squeeze(-1)
    if sampled.numel() == 0:
        return tokens_B
    probs_B_V = torch.softmax(logits_B_V[sampled].float() / temperature_B[sampled, None], dim=-1)
    top_p = top_p_B[sampled, None]
    if bool((top_p < 1.0).any()):
        sorted_p, order = probs_B_V.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p
        probs_B_V = torch.zeros_like(probs_B_V).scatter(-1, order, sorted_p * keep)
    # Inverse-CDF sampling: one uniform per row. torch.multinomial draws an exponential for
    # every vocabulary entry, which costs more than the model's forward at batch 128 on a CPU.
    cdf_B_V = probs_B_V.cumsum(-1)
    uniform_B_1 = torch.rand((cdf_B_V.shape[0], 1), generator=generator, device=cdf_B_V.device) * cdf_B_V[:, -1:]
    tokens_B[sampled] = torch.searchsorted(cdf_B_V, uniform_B_1).squeeze(-1).clamp(max=cdf_B_V.shape[1] - 1)
    return tokens_B


@torch.inference_mode()
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
    state = prefill(model, prompts, pad_id)
    rows = torch.arange(len(prompts), device=model.device).repeat_interleave(samples_per_prompt)
    state = state.select(rows)
    n_rows = rows.numel()
    cache, mask_B_T, position_B = state.cache, state.attention_mask_P_T, state.next_position_P
    logits_B_V = state.last_logits_P_V
    active = torch.arange(n_rows)  # which output rows are still generating
    outputs: list[list[int]] = [[] for _ in range(n_rows)]
    stop = torch.tensor(stop_ids, device=model.device)
    for step in range(params.max_new_tokens):
        tokens_B = pick_tokens(logits_B_V, params, generator)
        for row, token in zip(active.tolist(), tokens_B.tolist()):
            outputs[row].append(token)
        still = ~torch.isin(tokens_B, stop)
        if done is not None:
            still &= torch.tensor([not done(outputs[row]) for row in active.tolist()], device=still.device)
        if step == params.max_new_tokens - 1 or not bool(still.any()):
            break
        if not bool(still.all()):
            keep = still.nonzero().squeeze(-1)
            active, tokens_B, position_B, mask_B_T = active[keep], tokens_B[keep], position_B[keep], mask_B_T[keep]
            cache.batch_select_indices(keep)
        mask_B_T = torch.cat([mask_B_T, torch.ones_like(mask_B_T[:, :1])], dim=1)
        out = model(
            input_ids=tokens_B[:, None],
            attention_mask=mask_B_T,
            position_ids=position_B[:, None],
            past_key_values=cache,
            use_cache=True,
        )
        cache, logits_B_V, position_B = out.past_key_values, out.logits[:, -1, :], position_B + 1
    return outputs
