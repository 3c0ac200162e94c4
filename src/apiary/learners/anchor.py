"""Distillation toward the core on general prompts, interleaved with a learner's own updates.

A worker that learns one job drifts on everything else the core could do. Each step, the worker
samples its own replies to a few general "anchor" prompts (`anchor_prompts.jsonl`, disjoint from the
retention prompts the gate measures, so the gate is not measuring what was trained on), and on every
token of those samples it is pulled toward the core's next-token distribution by the exact per-token
reverse KL(worker || core), summed over the vocabulary: on-policy distillation toward the core,
the same loss consolidation uses to hold a candidate to the previous core (hive.distill). On-policy,
because the worker is corrected where it actually goes (Thinking Machines, "On-policy distillation",
2025, restored lost behaviour this way).

The core is the worker's model with its adapter disabled: a worker on core version N sits on the
base weights with the updates of N's lineage folded into them (models.core.with_core_updates),
so disabling the worker's adapter gives exactly its own core, not the base model.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import resources

import torch

from apiary.models import adapters
from apiary.models.generate import SamplingParams, generate
from apiary.learners.common import reverse_kl
from apiary.models.logprobs import pair_logits
from apiary.models.prompt_format import prompt_ids

ANCHOR_FILE = "anchor_prompts.jsonl"
ANCHOR_KINDS = ("request", "short")
"""request: writing, explaining, advice (80 prompts, long replies); short: questions with a short answer and
small instructions (64 prompts, written unlike any retention item's template). An RL worker anchored on
requests alone still lost the core's short-answer habit: on the retention items it stopped answering
"The capital of Italy is Rome." and began "Il Coriobergiano is the capital of Italy." Anchoring on both
kinds did not lower its flips (docs/benchmarks.md), so learners anchor on requests by default."""
DEFAULT_KINDS = ("request",)


def anchor_prompts(kinds: tuple[str, ...] = DEFAULT_KINDS) -> list[str]:
    """General prompts of these kinds (see ANCHOR_KINDS) that learners may train on to stay near the core."""
    unknown = set(kinds) - set(ANCHOR_KINDS)
    if unknown or not kinds:
        raise ValueError(f"anchor prompt kinds must be some of {', '.join(ANCHOR_KINDS)}, not {', '.join(kinds) or 'none'}")
    text = resources.files("apiary.learners").joinpath(ANCHOR_FILE).read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [row["prompt"] for row in rows if row["kind"] in kinds]


@dataclass
class AnchorFigures:
    """What one anchor term did: the mean per-token KL(worker || core) on the worker's samples
    (before the update), the tokens it was measured on, and the seconds spent sampling them."""

    kl: float = 0.0
    tokens: int = 0
    sample_seconds: float = 0.0


class CoreAnchor:
    """The anchor term of one learner: `weight` x KL(worker || core) on the worker's replies to
    `per_step` anchor prompts (drawn afresh each step), replies of at most `new_tokens` tokens."""

    def __init__(self, tokenizer, stop_ids: list[int], weight: float, per_step: int, new_tokens: int,
                 temperature: float = 1.0, kinds: tuple[str, ...] = DEFAULT_KINDS):
        self.tokenizer, self.stop_ids = tokenizer, stop_ids
        self.weight, self.per_step = weight, per_step
        self.params = SamplingParams(max_new_tokens=new_tokens, temperature=temperature)
        self.prompts = [prompt_ids(tokenizer, [{"role": "user", "content": p}]) for p in anchor_prompts(kinds)]

    def sample(self, model, generator: torch.Generator, n: int | None = None) -> list[tuple[list[int], list[int]]]:
        """The worker's replies to `n` (default `per_step`) anchor prompts drawn afresh: (prompt, reply) pairs,
        empty replies left out."""
        n = self.per_step if n is None else n
        chosen = torch.cat([torch.randperm(len(self.prompts), generator=generator)  # each prompt once before any twice
                            for _ in range(-(-n // len(self.prompts)))])[:n].tolist()
        prompts = [self.prompts[i] for i in chosen]
        model.eval()
        with torch.no_grad(), adapters.merged(model):
            completions = generate(model, prompts, 1, self.params, self.stop_ids, self.tokenizer.pad_token_id, generator)
        return [(p, c) for p, c in zip(prompts, completions) if c]

    def backward(self, model, generator: torch.Generator,
                 pairs: list[tuple[list[int], list[int]]] | None = None) -> AnchorFigures:
        """Sample (unless `pairs` were sampled already), then add the gradient of weight x KL(worker || core) to the
        adapter's gradients (the caller zeroes them before and steps the optimiser after)."""
        started = time.perf_counter()
        pairs = self.sample(model, generator) if pairs is None else pairs
        figures = AnchorFigures(sample_seconds=time.perf_counter() - started)
        if not pairs:
            return figures
        pad = self.tokenizer.pad_token_id
        with torch.no_grad(), model.disable_adapter():  # the worker's own core (see the module's docstring)
            core_N_V = pair_logits(model, pairs, pad)
        model.train()
        kl = reverse_kl(pair_logits(model, pairs, pad), core_N_V)
        (self.weight * kl).backward()
        model.eval()
        figures.kl, figures.tokens = float(kl.detach()), sum(len(c) for _, c in pairs)
        return figures
