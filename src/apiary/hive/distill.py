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

`full`: the candidate is instead a copy of the core trained in every weight (consolidation method
"full", run at a full fine-tuning learning rate, ~1e-5); the workers' adapters then sit on the
untouched core, which is also the previous core's teacher. The same loss, the same samples.

Where the time goes, per step: one sampling batch for every teacher's prompts (the candidate's
adapter merged), then per teacher a no-grad forward under the teacher and a forward + backward
under the candidate over the sampled replies. A job's prompts share most of their tokens (system
prompt, instructions), so both forwards read that common prefix once and each prompt's own
suffix once (models/logprobs.completion_logits), as the learners do; a plain forward over every
prompt + reply read each ~55-token job prompt in full for 16 reply tokens or fewer.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import Progress
from peft import PeftModel
from transformers import PreTrainedModel

from apiary.learners.common import reverse_kl
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.decoder import Request, decode
from apiary.models.logprobs import completion_logits

STUDENT = "default"


@dataclass
class DistillConfig:
    steps: int = 16  # 40 until issue 16's demo budget (docs/benchmarks.md's figures were made with 40)
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
            config: DistillConfig = DistillConfig(), show_progress: bool = True, full: bool = False):
    """Train a candidate core toward the teachers; returns (candidate, figures). The candidate is
    `core_model` with a trained adapter "default" or (`full`) a copy of it trained in every weight.
    The worker adapters are removed from `core_model` before returning."""
    if full:  # the copy is taken before any adapter is put on the core
        student = copy.deepcopy(core_model).requires_grad_(True)
        host = _host(core_model, teachers)
    else:
        student = host = adapters.attach(core_model, LoraSpec(rank=config.rank, alpha=2 * config.rank))
        for teacher in teachers:
            if teacher.adapter is not None:
                host.load_adapter(str(teacher.adapter), adapter_name=teacher.name)
        host.set_adapter(STUDENT)
    trained = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=config.learning_rate, weight_decay=0.0)
    rng, generator = random.Random(config.seed), torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    started = time.perf_counter()
    with Progress(disable=not show_progress, transient=False) as bar:
        task = bar.add_task("distilling the workers into a core", total=config.steps)
        for step in range(config.steps):
            optimizer.zero_grad(set_to_none=True)
            chosen = [rng.sample(t.prompts, min(len(t.prompts), t.batch)) for t in teachers]
            samples = _sample(student, tokenizer, stop_ids, teachers, chosen, config.temperature, generator)
            losses = {t.name: _teacher_step(student, host, tokenizer.pad_token_id, t, pairs)
                      for t, pairs in zip(teachers, samples)}
            torch.nn.utils.clip_grad_norm_(trained, config.max_grad_norm)
            optimizer.step()
            history.append({"step": step + 1, **losses})
            bar.update(task, advance=1, description="distilling  " + "  ".join(f"{k} {v:.3f}" for k, v in losses.items()))
    if full:
        host.unload()  # the core as it was
    else:
        for teacher in teachers:
            if teacher.adapter is not None:
                host.delete_adapter(teacher.name)
        host.set_adapter(STUDENT)
    student.eval()
    return student, {"seconds": time.perf_counter() - started, "history": history, "config": config.__dict__,
                     "weights": "full" if full else "adapter"}


def _host(core_model: PreTrainedModel, teachers: list[Teacher]):
    """The core with every worker's adapter loaded (frozen), for the teachers of a candidate trained in every weight."""
    workers = [t for t in teachers if t.adapter is not None]
    host = PeftModel.from_pretrained(core_model, str(workers[0].adapter), adapter_name=workers[0].name)
    for teacher in workers[1:]:
        host.load_adapter(str(teacher.adapter), adapter_name=teacher.name)
    return host.requires_grad_(False)


def _sample(model, tokenizer, stop_ids, teachers: list[Teacher], prompts: list[list[list[int]]], temperature: float,
            generator) -> list[list[tuple[list[int], list[int]]]]:
    """The candidate's replies to every teacher's prompts of this step, sampled together in one batch with the
    candidate's adapter merged; per teacher, the (prompt, completion) pairs with a non-empty completion."""
    requests = [[Request(prompt=p, max_new_tokens=t.max_new_tokens, temperature=temperature, stop_ids=tuple(stop_ids))
                 for p in mine] for t, mine in zip(teachers, prompts)]
    model.eval()
    with adapters.merged(model), torch.inference_mode():
        decode(model, [r for rows in requests for r in rows], tokenizer.pad_token_id, generator)
    return [[(r.prompt, r.tokens) for r in rows if r.tokens] for rows in requests]


def _teacher_step(student, host, pad_id: int, teacher: Teacher, pairs: list[tuple[list[int], list[int]]]) -> float:
    """Score every sampled token against the teacher (a worker's adapter on `host`, or `host`'s core with
    its adapters off), accumulate the gradients of the student's weighted reverse KL. With a core adapter
    as the student, `host` is the student's own model."""
    if not pairs:
        return 0.0
    prompts, completions, index = [p for p, _ in pairs], [c for _, c in pairs], list(range(len(pairs)))
    with torch.no_grad():
        if teacher.adapter is None:
            with host.disable_adapter():
                target = completion_logits(host, prompts, completions, index, pad_id)
        else:
            host.set_adapter(teacher.name)
            target = completion_logits(host, prompts, completions, index, pad_id)
            if host is student:
                host.set_adapter(STUDENT)
    student.train()
    kl = reverse_kl(completion_logits(student, prompts, completions, index, pad_id), target)
    (teacher.weight * kl).backward()
    student.eval()
    return float(kl.detach())
