"""A running batch of one model: rows join while others are mid-reply (continuous batching).

Each row holds a request's KV cache, left-padded to the batch's length; the attention mask has
zeros at the pads and every row keeps its own position ids, so a row sees exactly its own tokens
whatever joins or leaves around it. A new request is prefilled on its own (with the other new
requests of the same adapter), padded to the batch's length and appended; a finished row is
dropped at once, and columns no remaining row uses are cut off the left.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from apiary.models.generate import sample_rows
from apiary.models.prefix import PromptState, prefill

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch


@dataclass
class Request:
    """One reply to write. `on_token` and `on_done` are called on the engine's thread."""

    prompt: list[int]
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    adapter: str = BASE
    stop_ids: tuple[int, ...] = ()
    done: Callable[[list[int]], bool] | None = None  # e.g. a stop string was written
    on_token: Callable[[int], None] | None = None
    on_done: Callable[["Request"], None] | None = None
    tokens: list[int] = field(default_factory=list)
    finish_reason: str | None = None  # stop | length | cancelled | error
    cancelled: bool = False


class RunningBatch:
    """The rows being decoded by one model, and their shared left-padded KV cache."""

    def __init__(self, model, pad_id: int, generator: torch.Generator):
        self.model, self.pad_id, self.generator = model, pad_id, generator
        self.rows: list[Request] = []
        self.cache: DynamicCache | None = None
        self.mask_B_T = self.position_B = self.logits_B_V = None

    def __len__(self) -> int:
        return len(self.rows)

    def admit(self, requests: list[Request]) -> None:
        """Prefill `requests` (grouped by adapter) and add them to the batch."""
        for adapter in dict.fromkeys(r.adapter for r in requests):
            group = [r for r in requests if r.adapter == adapter]
            with self._adapter([adapter]):
                state = prefill(self.model, [r.prompt for r in group], self.pad_id)
            self._append(group, state)

    def step(self) -> None:
        """Pick each row's next token, finish the rows that are done, and run the rest one token on."""
        temperature = torch.tensor([r.temperature for r in self.rows])
        top_p = torch.tensor([r.top_p for r in self.rows])
        tokens_B = sample_rows(self.logits_B_V, temperature, top_p, self.generator)
        keep = []
        for i, (row, token) in enumerate(zip(self.rows, tokens_B.tolist())):
            if not row.cancelled:
                row.tokens.append(token)
                if row.on_token is not None:
                    row.on_token(token)
            reason = _finished(row, token)
            if reason is None:
                keep.append(i)
            else:
                row.finish_reason = reason
                if row.on_done is not None:
                    row.on_done(row)
        if len(keep) < len(self.rows):
            self._keep(keep)
            tokens_B = tokens_B[keep]
        if not self.rows:
            return
        self.mask_B_T = torch.cat([self.mask_B_T, torch.ones_like(self.mask_B_T[:, :1])], dim=1)
        with self._adapter([r.adapter for r in self.rows]) as kwargs:
            out = self.model(input_ids=tokens_B[:, None], attention_mask=self.mask_B_T,
                             position_ids=self.position_B[:, None], past_key_values=self.cache, use_cache=True, **kwargs)
        self.cache, self.logits_B_V, self.position_B = out.past_key_values, out.logits[:, -1, :], self.position_B + 1

    def fail(self, reason: str = "error") -> None:
        """End every row (the model raised): each request is told, none is left waiting."""
        for row in self.rows:
            row.finish_reason = reason
            if row.on_done is not None:
                row.on_done(row)
        self.rows, self.cache = [], None

    def _append(self, group: list[Request], state: PromptState) -> None:
        if not self.rows:
            self.rows, self.cache = list(group), state.cache
            self.mask_B_T, self.position_B, self.logits_B_V = (state.attention_mask_P_T, state.next_position_P,
                                                               state.last_logits_P_V)
            return
        width = max(self.mask_B_T.shape[1], state.attention_mask_P_T.shape[1])
        layers = [(torch.cat([_left_pad(a.keys, width), _left_pad(b.keys, width)]),
                   torch.cat([_left_pad(a.values, width), _left_pad(b.values, width)]))
                  for a, b in zip(self.cache.layers, state.cache.layers)]
        self.cache = DynamicCache(layers)
        self.mask_B_T = torch.cat([_left_pad(self.mask_B_T, width, dim=1), _left_pad(state.attention_mask_P_T, width, dim=1)])
        self.position_B = torch.cat([self.position_B, state.next_position_P])
        self.logits_B_V = torch.cat([self.logits_B_V, state.last_logits_P_V])
        self.rows += group

    def _keep(self, keep: list[int]) -> None:
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache = self.mask_B_T = self.position_B = self.logits_B_V = None
            return
        index = torch.tensor(keep)
        self.mask_B_T, self.position_B = self.mask_B_T[index], self.position_B[index]
        start = int(self.mask_B_T.any(0).nonzero()[0])  # columns left of this hold only pads now
        self.mask_B_T = self.mask_B_T[:, start:]
        self.cache = DynamicCache([(layer.keys[index, :, start:], layer.values[index, :, start:]) for layer in self.cache.layers])
        self.logits_B_V = self.logits_B_V[index]

    @contextmanager
    def _adapter(self, names: list[str]):
        """Run the model as the rows' adapters: PEFT's active adapter when all rows share one (the
        fast path), a mixed batch (`adapter_names`) when they differ; a plain model is the core."""
        if not hasattr(self.model, "peft_config"):
            yield {}
        elif len(set(names)) > 1:
            yield {"adapter_names": names}
        elif names[0] == BASE:
            with self.model.disable_adapter():
                yield {}
        else:
            if self.model.active_adapter != names[0]:
                self.model.set_adapter(names[0])
            yield {}


def _finished(row: Request, token: int) -> str | None:
    if row.cancelled:
        return "cancelled"
    if token in row.stop_ids:
        return "stop"
    if row.done is not None and row.done(row.tokens):
        return "stop"
    if len(row.tokens) >= row.max_new_tokens:
        return "length"
    return None


def _left_pad(tensor: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    """Zeros on the left of `dim` up to `width` (KV caches: the sequence is dim 2; masks: dim 1)."""
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    pad = [0, 0] * (tensor.dim() - 1 - dim) + [missing, 0]
    return F.pad(tensor, pad)
