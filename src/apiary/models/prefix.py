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

A multi-turn episode goes on from where its last reply ended: `extend` reads only each row's new
tokens (the reply's last token, the environment's turn) on top of the KV cache the row kept
(`RowCache`), instead of reading the whole conversation again each turn.
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


@dataclass
class RowCache:
    """One row's KV cache as a reply ended: every token read so far (`mask_T` 0 at pads between them), and
    the position id of the next token. What it holds is the row's conversation up to, not including, the
    reply's last token (sampled, never read)."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, keys and values of shape [1, heads, T, dim]
    mask_T: torch.Tensor
    next_position: int


def extend(model: PreTrainedModel, rows: list[RowCache], suffixes: list[list[int]], pad_id: int) -> PromptState:
    """Read each row's `suffixes` (at least one token each) on top of its kept cache, in one forward: the
    caches left-padded to one width, the suffixes left-padded after them, so every row sees exactly its own
    tokens, at its own positions."""
    if not rows or len(rows) != len(suffixes) or any(len(s) == 0 for s in suffixes):
        raise ValueError("extend needs one non-empty suffix per kept row")
    device, width = model.device, max(r.mask_T.shape[0] for r in rows)
    layers = [(torch.cat([left_pad(r.layers[i][0], width) for r in rows]), torch.cat([left_pad(r.layers[i][1], width) for r in rows]))
              for i in range(len(rows[0].layers))]
    mask_P_T = torch.stack([left_pad(r.mask_T, width, dim=0) for r in rows])
    ids_P_S, suffix_mask_P_S = _left_padded(suffixes, pad_id, device)
    start_P = torch.tensor([r.next_position for r in rows], device=device)
    positions_P_S = start_P[:, None] + (suffix_mask_P_S.cumsum(1) - 1).clamp(min=0)
    mask_P_T = torch.cat([mask_P_T, suffix_mask_P_S], 1)
    out = model(input_ids=ids_P_S, attention_mask=mask_P_T, position_ids=positions_P_S,
                past_key_values=DynamicCache(layers), use_cache=True, logits_to_keep=1)
    return PromptState(cache=out.past_key_values, attention_mask_P_T=mask_P_T,
                       next_position_P=start_P + suffix_mask_P_S.sum(1), last_logits_P_V=out.logits[:, -1, :])


def left_pad(tensor: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    """Zeros on the left of `dim` up to `width` (KV caches: the sequence is dim 2; masks: dim 1)."""
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    pad = [0, 0] * (tensor.dim() - 1 - dim) + [missing, 0]
    return torch.nn.functional.pad(tensor, pad)


def _left_padded(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows' ids left-padded to one width with `pad_id`, and a mask with 1 on the real tokens."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, device=device)
        mask[i, width - len(row):] = 1
    return ids, mask


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
        self.ids_P_S, suffix_mask_P_S = _left_padded([p[len(self.prefix):] for p in prompts], pad_id, device)
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
