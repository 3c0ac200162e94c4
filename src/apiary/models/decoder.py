"""The one decoder: a running batch of one model, used by everything that generates.

Rows can join while others are mid-reply (continuous batching, the server's engine), or all be
admitted at once and run until the last one ends (`decode`, which `generate` uses for learners and
evals). Each row holds a request's KV cache, left-padded to the batch's length; the attention mask
has zeros at the pads and every row keeps its own position ids, so a row sees exactly its own
tokens whatever joins or leaves around it. New requests are prefilled together per adapter, with
the shared-prefix prefill and identical prompts read once (a group of samples of one prompt costs
one prefill), padded to the batch's length and appended; a finished row is dropped at once, so a
long straggler does not make every other row pay for its tokens, and columns no remaining row uses
are cut off the left. Each row samples with its own temperature (0: greedy) and top-p.

With `prefill_chunk` N > 0 (the server's engine), joining requests are not read in one forward
while the running rows wait: each `step` decodes the running rows one token, then reads at most N
prompt tokens of the oldest joining group into that group's own cache, which joins the batch when
its prompts are all read. So a long prompt pauses the running replies by one chunk's forward per
token, not by its whole prefill. (One forward carrying both the decode tokens and a chunk would
need a ragged batch: a rectangular KV cache pads every decoding row to the chunk's length.) With
no rows running, nobody waits, and the group is read whole.
"""

from __future__ import annotations

import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch
from peft import PeftModel
from transformers import DynamicCache

from apiary.models.logprobs import token_logprobs
from apiary.models.prefix import PrefillJob, PromptState, RowCache, left_pad

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch


@dataclass
class Request:
    """One reply to write. `on_token` and `on_done` are called on the decoding thread (the engine's, when serving)."""

    prompt: list[int]
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    adapter: str | None = None  # a PEFT adapter name, BASE for the core alone; None: the model as it is
    stop_ids: tuple[int, ...] = ()
    done: Callable[[list[int]], bool] | None = None  # e.g. a stop string was written
    on_token: Callable[[int], None] | None = None
    on_done: Callable[["Request"], None] | None = None
    tokens: list[int] = field(default_factory=list)
    # None: not recorded; a list: each written token's log-probability under the logits it was sampled from, at
    # temperature 1 and before top-p (what a learner's teacher-forced log-prob of the token is, models.logprobs)
    logprobs: list[float] | None = None
    finish_reason: str | None = None  # stop | length | cancelled | error | timeout
    cancelled: bool = False
    deadline: float | None = None  # time.monotonic() past which the reply ends with "timeout"; None: no limit
    keep_cache: bool = False  # keep the row's KV cache in `cache` when it ends (a multi-turn episode goes on from it)
    cache: RowCache | None = None

    def overdue(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


@dataclass
class Joining:
    """Requests of one adapter whose prompts are being read (each distinct prompt once)."""

    adapter: str | None
    group: list[Request]
    job: PrefillJob
    prompt_of_row: list[int]  # the job's prompt that each request of `group` continues


class RunningBatch:
    """The rows being decoded by one model, their shared left-padded KV cache, and the requests
    joining it (their prompts being read a chunk per step, when `prefill_chunk` > 0)."""

    def __init__(self, model, pad_id: int, generator: torch.Generator | None, prefill_chunk: int = 0):
        check_prefill_chunk(prefill_chunk)
        self.model, self.pad_id, self.generator, self.prefill_chunk = model, pad_id, generator, prefill_chunk
        self.rows: list[Request] = []
        self.joining: deque[Joining] = deque()
        self.cache: DynamicCache | None = None
        self.mask_B_T = self.position_B = self.logits_B_V = None

    def __len__(self) -> int:
        """Requests decoding or joining."""
        return len(self.rows) + sum(len(j.group) for j in self.joining)

    def admit(self, requests: list[Request]) -> None:
        """Prefill `requests` (grouped by adapter, each distinct prompt once) and add them to the batch;
        with `prefill_chunk` > 0 they join over the next steps instead."""
        for adapter in dict.fromkeys(r.adapter for r in requests):
            group = [r for r in requests if r.adapter == adapter]
            distinct = {prompt: i for i, prompt in enumerate(dict.fromkeys(tuple(r.prompt) for r in group))}
            job = PrefillJob([list(p) for p in distinct], self.pad_id, self.model.device)
            joining = Joining(adapter, group, job, [distinct[tuple(r.prompt)] for r in group])
            if self.prefill_chunk == 0:
                self._read(joining, 0)
            else:
                self.joining.append(joining)

    def step(self) -> None:
        """Decode the running rows one token, then read one chunk of the oldest joining group's prompts."""
        if self.rows:
            self._decode()
        while self.joining and all(r.cancelled or r.overdue() for r in self.joining[0].group):  # nobody waits for it
            for r in self.joining.popleft().group:
                r.finish_reason = "cancelled" if r.cancelled else "timeout"
                if r.on_done is not None:
                    r.on_done(r)
        if self.joining and self._read(self.joining[0], self.prefill_chunk if self.rows else 0):
            self.joining.popleft()

    def _read(self, joining: Joining, budget: int) -> bool:
        """Read the next `budget` prompt tokens of `joining` (0: all); True once its requests are rows."""
        with self._adapter([joining.adapter]):
            state = joining.job.advance(self.model, budget)
        if state is None:
            return False
        if len(joining.prompt_of_row) > state.last_logits_P_V.shape[0]:
            state = state.select(torch.tensor(joining.prompt_of_row, device=self.model.device))
        self._append(joining.group, state)
        return True

    def _decode(self) -> None:
        """Pick each row's next token, finish the rows that are done, and run the rest one token on."""
        device = self.logits_B_V.device
        temperature = torch.tensor([r.temperature for r in self.rows], device=device)
        top_p = torch.tensor([r.top_p for r in self.rows], device=device)
        tokens_B = sample_rows(self.logits_B_V, temperature, top_p, self.generator)
        logprobs_B = (token_logprobs(self.logits_B_V, tokens_B).tolist() if any(r.logprobs is not None for r in self.rows)
                      else None)
        keep = []
        for i, (row, token) in enumerate(zip(self.rows, tokens_B.tolist())):
            if not row.cancelled:
                row.tokens.append(token)
                if row.logprobs is not None:
                    row.logprobs.append(logprobs_B[i])
                if row.on_token is not None:
                    row.on_token(token)
            reason = _finished(row, token)
            if reason is None:
                keep.append(i)
            else:
                if row.keep_cache:
                    row.cache = self._row_cache(i)
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

    def join(self, requests: list[Request], state: PromptState) -> None:
        """Add `requests` whose prompts are already read (`state`, one row each) to the batch."""
        self._append(requests, state)

    def _row_cache(self, i: int) -> RowCache:
        """Row i's cache, from its first real token, copied out of the batch's."""
        start = int(self.mask_B_T[i].nonzero()[0])
        return RowCache([(layer.keys[i:i + 1, :, start:].clone(), layer.values[i:i + 1, :, start:].clone())
                         for layer in self.cache.layers], self.mask_B_T[i, start:].clone(), int(self.position_B[i]))

    def fail(self, reason: str = "error") -> None:
        """End every row and joining request (the model raised): each is told, none is left waiting."""
        for row in self.rows + [r for j in self.joining for r in j.group]:
            row.finish_reason = reason
            if row.on_done is not None:
                row.on_done(row)
        self.rows, self.cache = [], None
        self.joining.clear()

    def _append(self, group: list[Request], state: PromptState) -> None:
        if not self.rows:
            self.rows, self.cache = list(group), state.cache
            self.mask_B_T, self.position_B, self.logits_B_V = (state.attention_mask_P_T, state.next_position_P,
                                                               state.last_logits_P_V)
            return
        width = max(self.mask_B_T.shape[1], state.attention_mask_P_T.shape[1])
        layers = [(torch.cat([left_pad(a.keys, width), left_pad(b.keys, width)]),
                   torch.cat([left_pad(a.values, width), left_pad(b.values, width)]))
                  for a, b in zip(self.cache.layers, state.cache.layers)]
        self.cache = DynamicCache(layers)
        self.mask_B_T = torch.cat([left_pad(self.mask_B_T, width, dim=1), left_pad(state.attention_mask_P_T, width, dim=1)])
        self.position_B = torch.cat([self.position_B, state.next_position_P])
        self.logits_B_V = torch.cat([self.logits_B_V, state.last_logits_P_V])
        self.rows += group

    def _keep(self, keep: list[int]) -> None:
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache = self.mask_B_T = self.position_B = self.logits_B_V = None
            return
        index = torch.tensor(keep, device=self.mask_B_T.device)
        self.mask_B_T, self.position_B = self.mask_B_T[index], self.position_B[index]
        start = int(self.mask_B_T.any(0).nonzero()[0])  # columns left of this hold only pads now
        self.mask_B_T = self.mask_B_T[:, start:]
        self.cache = DynamicCache([(layer.keys[index, :, start:], layer.values[index, :, start:]) for layer in self.cache.layers])
        self.logits_B_V = self.logits_B_V[index]

    @contextmanager
    def _adapter(self, names: list[str]):
        """Run the model as the rows' adapters: PEFT's active adapter when all rows share one (the
        fast path), a mixed batch (`adapter_names`) when they differ; a plain model is the core, and
        rows without an adapter name (None) run the model as it is."""
        if not isinstance(self.model, PeftModel) or names[0] is None:
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


def check_prefill_chunk(prefill_chunk: int) -> None:
    """ValueError unless `prefill_chunk` is a whole number of prompt tokens >= 0."""
    if not isinstance(prefill_chunk, int) or isinstance(prefill_chunk, bool) or prefill_chunk < 0:
        raise ValueError(f"the prefill chunk is a whole number of prompt tokens >= 0 (0: whole prompts), "
                         f"got {prefill_chunk!r}")


def decode(model, requests: list[Request], pad_id: int, generator: torch.Generator | None = None) -> None:
    """Write every request's reply (into `request.tokens`): all admitted at once, stepped until the
    last one ends. The same generator gives the same replies."""
    batch = RunningBatch(model, pad_id, generator)
    batch.admit(requests)
    while batch.rows:
        batch.step()


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


def _finished(row: Request, token: int) -> str | None:
    if row.cancelled:
        return "cancelled"
    if token in row.stop_ids:
        return "stop"
    if row.done is not None and row.done(row.tokens):
        return "stop"
    if len(row.tokens) >= row.max_new_tokens:
        return "length"
    if row.overdue():
        return "timeout"
    return None
