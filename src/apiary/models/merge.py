"""Merging worker adapters into one, with PEFT's weighted-adapter merging (the hive's baselines).

Methods act on each layer's full low-rank update (delta W = scaling x B @ A) and bring the result
back to a LoRA of rank `rank` by SVD (PEFT's `*_svd` combinations); with a rank of at least the
sum of the workers' ranks the linear merge is exact:

- linear:      delta = sum_i w_i delta_i                      (task arithmetic)
- ties:        keep each delta's top `density` entries by magnitude, elect the sign of each entry by
               the weighted total, average the entries that agree with it (TIES, Yadav et al., 2023)
- dare_linear: drop each entry with probability 1 - density, rescale the rest by 1 / density, then
               add (DARE, Yu et al., 2023); random, seeded by `seed`

PEFT merges a single adapter linearly whatever the method.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from transformers import PreTrainedModel

METHODS = {"linear": "svd", "ties": "ties_svd", "dare_linear": "dare_linear_svd"}
MERGED = "merged"


def merge(core: PreTrainedModel, paths: list[Path], weights: list[float] | None = None, method: str = "linear",
          density: float = 0.5, rank: int | None = None, seed: int = 0) -> PeftModel:
    """The core with one adapter (named "merged") combining the adapters saved at `paths`."""
    if method not in METHODS:
        raise ValueError(f"unknown merge method {method!r}; choose from {', '.join(METHODS)}")
    if not paths:
        raise ValueError("nothing to merge: no adapters given")
    weights = weights or [1.0 / len(paths)] * len(paths)
    names = [f"worker{i}" for i in range(len(paths))]
    model = PeftModel.from_pretrained(core, str(paths[0]), adapter_name=names[0])
    for name, path in zip(names[1:], paths[1:]):
        model.load_adapter(str(path), adapter_name=name)
    rank = rank or sum(model.peft_config[n].r for n in names)
    rank = min(rank, _smallest_side(model, names[0]))  # an SVD cannot give more (PEFT would build wrong shapes)
    torch.manual_seed(seed)  # DARE's random drops
    model.add_weighted_adapter(names, weights, MERGED, combination_type=METHODS[method], svd_rank=rank,
                               density=None if method == "linear" else density)
    model.set_adapter(MERGED)
    for name in names:
        model.delete_adapter(name)
    return model


def _smallest_side(model: PeftModel, adapter: str) -> int:
    sides = [min(m.in_features, m.out_features) for m in model.modules() if adapter in getattr(m, "lora_A", {})]
    return min(sides)


def delta(model: PeftModel, module: str, adapter: str = MERGED) -> torch.Tensor:
    """The full weight update an adapter makes to one linear layer (scaling x B @ A)."""
    layer = model.get_submodule(module)
    return layer.scaling[adapter] * layer.lora_B[adapter].weight @ layer.lora_A[adapter].weight
