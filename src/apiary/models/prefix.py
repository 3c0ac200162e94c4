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
    return PrefillJob(prompts, pad_id, model.device).advance(model)


class PrefillJob:
    """P prompts being read, whole (`advance()`) or a chunk per call (`advance(budget)`), so that a
    server can read a long prompt between the decoding steps of the replies already running.

    The pieces are the prefix common to all prompts (batch 1; its cache is then expanded to P rows,
    not copied) and the prompts' own suffixes, left-padded to one width; a chunk is a range of
    columns of either. Every query sees exactly the keys it would see in one pass (the causal mask
    over the cache plus the chunk, zeros at the pads), so chunking changes the arithmetic's grouping,
    not what is computed.
    """

    def __init__(self, prompts: list[list[int]], pad_id: int, device: torch.device):
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("prefill needs at least one non-empty prompt")
        n_prompts = len(prompts)
        self.prefix = prompts[0][:shared_prefix_length(prompts) if n_prompts > 1 else 0]  # one prompt: one pass is cheaper
        suffixes = [p[len(self.prefix):] for p in prompts]
        width = max(len(s) for s in suffixes)
        self.ids_P_S = torch.full((n_prompts, width), pad_id, dtype=torch.long, device=device)
        suffix_mask_P_S = torch.zeros((n_prompts, width), dtype=torch.long, device=device)
        for row, suffix in enumerate(suffixes):
            self.ids_P_S[row, width - len(suffix):] = torch.tensor(suffix, device=device)
            suffix_mask_P_S[row, width - len(suffix):] = 1
        self.positions_P_S = len(self.prefix) + (suffix_mask_P_S.cumsum(1) - 1).clamp(min=0)
        self.mask_P_T = torch.cat([torch.ones((n_prompts, len(self.prefix)), dtype=torch.long, device=device),
                                   suffix_mask_P_S], 1)
        self.next_position_P = len(self.prefix) + suffix_mask_P_S.sum(1)
        self.cache: DynamicCache | None = None
        self.prefix_read = self.suffix_read = 0  # tokens of the prefix, columns of the suffixes, read so far

    def advance(self, model: PreTrainedModel, budget: int = 0) -> PromptState | None:
        """Run the next chunk of at most `budget` tokens (at least one column of the suffixes) through
        `model` (the caller's: a server may wrap its model in PEFT between two chunks); 0: read all
        that is left (the prefix, then the suffixes, one forward each). Returns the state once every
        prompt is read, None before."""
        if self.prefix_read < len(self.prefix):
            end = len(self.prefix) if budget == 0 else min(len(self.prefix), self.prefix_read + budget)
            prefix = torch.tensor([self.prefix[self.prefix_read:end]], device=model.device)
            out = model(input_ids=prefix, past_key_values=self.cache, use_cache=True, logits_to_keep=1)
            self.cache = out.past_key_values
            self.prefix_read = end
            if end == len(self.prefix):
                n = self.ids_P_S.shape[0]
                self.cache = DynamicCache([(layer.keys.expand(n, -1, -1, -1), layer.values.expand(n, -1, -1, -1))
                                           for layer in self.cache.layers])
            if budget > 0:
                return None
        start, width = self.suffix_read, self.ids_P_S.shape[1]
        end = width if budget == 0 else min(width, start + max(1, budget // self.ids_P_S.shape[0]))
        out = model(
            input_ids=self.ids_P_S[:, start:end],
            attention_mask=self.mask_P_T[:, :len(self.prefix) + end],
            position_ids=self.positions_P_S[:, start:end],
            past_key_values=self.cache if self.cache is not None else DynamicCache(),
            use_cache=True,
            logits_to_keep=1,
        )
        self.cache, self.suffix_read = out.past_key_values, end
        if end < width:
            return None
        return PromptState(cache=self.cache, attention_mask_P_T=self.mask_P_T, next_position_P=self.next_position_P,
                           last_logits_P_V=out.logits[:, -1, :])
