"""A core version trained in every weight, stored as its difference from its parent core.

Consolidation by full fine-tuning (hive.consolidate, method "full") changes every weight of the core
a little. The version is kept as that change (new - parent, one bfloat16 tensor per parameter, in
`core_delta.safetensors`), half the size of a float32 copy. bfloat16 keeps float32's exponent, so the
small entries of a small-learning-rate update keep 3 significant digits. The candidate is rounded to
exactly what is stored before it is measured (`round_to_stored`), so the gate's figures are those of
the version a user gets back.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

DELTA_FILE = "core_delta.safetensors"
DTYPE = torch.bfloat16


def is_delta(directory: Path) -> bool:
    """True if `directory` holds a core version stored as a weight delta (not as a core adapter)."""
    return (Path(directory) / DELTA_FILE).is_file()


def delta_of(model: torch.nn.Module, parent: torch.nn.Module) -> dict[str, torch.Tensor]:
    """model - parent for every parameter (tied weights once), as stored."""
    theirs = dict(parent.named_parameters())
    return {name: (p.detach() - theirs[name].detach()).to(DTYPE).contiguous() for name, p in model.named_parameters()}


@torch.no_grad()
def round_to_stored(model: torch.nn.Module, parent: torch.nn.Module, delta: dict[str, torch.Tensor]) -> None:
    """Set `model`'s weights to parent + delta (in float32), the weights the stored version loads as."""
    theirs = dict(parent.named_parameters())
    for name, p in model.named_parameters():
        p.copy_(theirs[name].detach() + delta[name].to(p.dtype))


def save(delta: dict[str, torch.Tensor], directory: Path) -> Path:
    """Write the delta into `directory` (the store writes it through artifacts.write_dir, atomically)."""
    save_file(delta, str(Path(directory) / DELTA_FILE))
    return Path(directory)


@torch.no_grad()
def apply(model: torch.nn.Module, directory: Path) -> None:
    """Add the stored delta in `directory` to `model`'s weights, in place. A delta that does not fit the
    model (another core's) is refused before anything changes."""
    delta = load_file(str(Path(directory) / DELTA_FILE))
    params = dict(model.named_parameters())
    wrong = sorted(set(delta) ^ set(params)) or [n for n in delta if delta[n].shape != params[n].shape]
    if wrong:
        raise ValueError(f"the core delta in {directory} does not fit this core (e.g. parameter {wrong[0]!r})")
    for name, p in params.items():
        p.add_(delta[name].to(p.dtype))
