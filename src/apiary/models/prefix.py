"""Shared-prefix prefill: the one trick that makes CPU sampling and training cheap.

Prompts of one job share most of their tokens (system prompt, instructions), and a
group-relative learner samples each prompt several times. So we run the model over
  1. the prefix common to all prompts once (batch 1),
  2. each prompt's own suffix once (batch P, the prefix cache expanded, not copied),
and hand back a KV cache that completions (any number per prompt) continue from.
The same code runs under `torch.inference_mode()` for sampling and with autograd for
training: gradients flow through the expanded prefix cache, so the result is exact.

Suffixes are left-padded *after* the shared prefix; the attention mask has zeros at the
pads and position ids skip them, so every row sees exactly its own prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel


@dataclass
class PromptState:
    """Model state after reading P prompts.

    cache: KV cache of shape [P, heads, T_prefix + S_max, dim] per layer.
    attention_mask_P_T: 1 where a cache position is a real token of that row's prompt.
    next_position_P: position id of the first completion token of each row.
    last_logits_P_V: logits predicting the first completion token.
    """

    cache: DynamicCache
    attention_mask_P_T: torch.Tensor
    next_position_P: torch.Tensor
    last_logits_P_V: torch.Tensor

    def select(self, rows: torch.Tensor) -> "PromptState":
        """Rows `rows` of this state (repeats allowed): e.g. each prompt G times for a group."""
        layers = [(layer.keys.index_select(0, rows), layer.values.index_select(0, rows)) for layer in self.cache.layers]
        return PromptState(
            cache=DynamicCache(layers),
            attention_mask_P_T=self.attention_mask_P_T.index_select(0, rows),
            next_position_P=self.next_position_P.index_select(0, rows),
            last_logits_P_V=self.last_logits_P_V.index_select(0, rows),
        )


def shared_prefix_length(prompts: list[list[int]]) -> int:
    """Length of the longest common prefix, leaving every prompt at least one token of its own."""
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


def prefill(model: PreTrainedModel, prompts: list[list[int]], pad_id: int) -> PromptState:
    """Read P tokenised prompts, sharing the work on their common prefix."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("prefill needs at least one non-empty prompt")
    device = model.device
    n_prompts = len(prompts)
    prefix_len = shared_prefix_length(prompts) if n_prompts > 1 else 0  # one prompt: one pass is cheaper
    cache = None
    if prefix_len > 0:
        prefix = torch.tensor([prompts[0][:prefix_len]], device=device)
        out = model(input_ids=prefix, use_cache=True, logits_to_keep=1)
        cache = DynamicCache(
            [(layer.keys.expand(n_prompts, -1, -1, -1), layer.values.expand(n_prompts, -1, -1, -1))
             for layer in out.past_key_values.layers]
        )
    suffixes = [p[prefix_len:] for p in prompts]
    width = max(len(s) for s in suffixes)
    ids = torch.full((n_prompts, width), pad_id, dtype=torch.long, device=device)
    suffix_mask = torch.zeros((n_prompts, width), dtype=torch.long, device=device)
    for row, suffix in enumerate(suffixes):
        ids[row, width - len(suffix):] = torch.tensor(suffix, device=device)
        suffix_mask[row, width - len(suffix):] = 1
    positions = prefix_len + (suffix_mask.cumsum(1) - 1).clamp(min=0)
    attention_mask = torch.cat([torch.ones((n_prompts, prefix_len), dtype=torch.long, device=device), suffix_mask], 1)
    out = model(
        input_ids=ids,
        attention_mask=attention_mask,
        position_ids=positions,
        past_key_values=cache if cache is not None else DynamicCache(),
        use_cache=True,
        logits_to_keep=1,
    )
    return PromptState(
        cache=out.past_key_values,
        attention_mask_P_T=attention_mask,
        next_position_P=prefix_len + suffix_mask.sum(1),
        last_logits_P_V=out.logits[:, -1, :],
    )
