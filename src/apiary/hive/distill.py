"""Consolidation by on-policy distillation: one core adapter that acts like every worker on its job.

The candidate core starts as the current core with a fresh LoRA (B = 0). Each step, for every
source worker, the candidate samples replies to some of that worker's training prompts; on
every token of its own samples, it is moved toward the worker's next-token distribution by the
exact per-token reverse KL, KL(candidate || worker), summed over the vocabulary (on-policy
distillation: the student is corrected where it actually goes, and a reverse KL seeks the
teacher's mode instead of spreading over it). On general "anchor" prompts, disjoint from the
retention prompts the gate measures, it is held to the previous core by the same KL, weighted
by `anchor_weight`, so that what no job asked for stays as it was.

Workers are loaded as extra, frozen adapters on the same model, so the teacher of each job is
the worker exactly as it was served, and the previous core is the model with the adapter off.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import Progress
from transformers import PreTrainedModel

from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.generate import SamplingParams, generate
from apiary.models.logprobs import completion_logits, reverse_kl

STUDENT = "default"


@dataclass
class DistillConfig:
    steps: int = 40
    prompts_per_job: int = 8  # per step, for each worker
    anchor_prompts: int = 8  # per step
    anchor_weight: float = 4.0  # 1.0 kept less of the chain_sum gain and flipped more items (docs/benchmarks.md)
    temperature: float = 1.0  # on-policy samples from the candidate
    max_new_tokens: int = 16  # on job prompts (at most the job's max_tokens)
    anchor_new_tokens: int = 24
    learning_rate: float = 1e-3
    rank: int = 32
    max_grad_norm: float = 1.0
    seed: int = 0


@dataclass
class Teacher:
    """A job's teacher: the worker's adapter (None: the previous core) and its prompts (token ids)."""

    name: str
    adapter: Path | None
    prompts: list[list[int]]
    weight: float = 1.0
    max_new_tokens: int = 24
    batch: int = 8  # prompts per step


def distill(core_model: PreTrainedModel, tokenizer, stop_ids: list[int], teachers: list[Teacher],
            config: DistillConfig = DistillConfig(), show_progress: bool = True) -> tuple[adapters.PeftModel, dict]:
    """Train a core adapter on `core_model` toward the teachers; returns (model with adapter
    "default" = the candidate, figures). The worker adapters are removed before returning."""
    model = adapters.attach(core_model, LoraSpec(rank=config.rank, alpha=2 * config.rank))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=0.0)
    for teacher in teachers:
        if teacher.adapter is not None:
            model.load_adapter(str(teacher.adapter), adapter_name=teacher.name)
    model.set_adapter(STUDENT)
    rng, generator = random.Random(config.seed), torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    started = time.perf_counter()
    with Progress(disable=not show_progress, transient=False) as bar:
        task = bar.add_task("distilling the workers into a core", total=config.steps)
        for step in range(config.steps):
            losses = {}
            optimizer.zero_grad(set_to_none=True)
            for teacher in teachers:
                prompts = rng.sample(teacher.prompts, min(len(teacher.prompts), teacher.batch))
                kl = _teacher_step(model, tokenizer, stop_ids, teacher, prompts, config, generator)
                losses[teacher.name] = kl
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.max_grad_norm)
            optimizer.step()
            history.append({"step": step + 1, **losses})
            bar.update(task, advance=1, description="distilling  " + "  ".join(f"{k} {v:.3f}" for k, v in losses.items()))
    for teacher in teachers:
        if teacher.adapter is not None:
            model.delete_adapter(teacher.name)
    model.set_adapter(STUDENT)
    model.eval()
    return model, {"seconds": time.perf_counter() - started, "history": history, "config": config.__dict__}


def _teacher_step(model, tokenizer, stop_ids, teacher: Teacher, prompts: list[list[int]], config: DistillConfig,
                  generator) -> float:
    """Sample from the candidate, score every sampled token against the teacher, accumulate gradients."""
    model.eval()
    params = SamplingParams(max_new_tokens=teacher.max_new_tokens, temperature=config.temperature)
    with adapters.merged(model):
        completions = generate(model, prompts, 1, params, stop_ids, tokenizer.pad_token_id, generator)
    pairs = [(p, c) for p, c in zip(prompts, completions) if c]
    if not pairs:
        return 0.0
    with torch.no_grad():
        if teacher.adapter is None:
            with model.disable_adapter():
                target = completion_logits(model, pairs, tokenizer.pad_token_id)
        else:
            model.set_adapter(teacher.name)
            target = completion_logits(model, pairs, tokenizer.pad_token_id)
            model.set_adapter(STUDENT)
    model.train()
    student = completion_logits(model, pairs, tokenizer.pad_token_id)
    kl = reverse_kl(student, target)
    (teacher.weight * kl).backward()
    model.eval()
    return float(kl.detach())

