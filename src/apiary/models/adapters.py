"""A worker's small adapter: PEFT LoRA on every linear layer of the core, saved as safetensors."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraSpec:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0

    def __post_init__(self):
        if self.rank < 1 or not self.alpha > 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"a LoRA adapter needs rank >= 1, alpha > 0 and dropout in [0, 1), not rank {self.rank}, "
                             f"alpha {self.alpha}, dropout {self.dropout}")


def attach(core: PreTrainedModel, spec: LoraSpec, path: Path | None = None) -> PeftModel:
    """The core with a trainable LoRA adapter: fresh (B = 0, so it starts as the core) or loaded."""
    if path is not None:
        return PeftModel.from_pretrained(core, str(path), is_trainable=True)
    config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=TARGETS, bias="none")
    return get_peft_model(core, config)


def detach(model: PeftModel) -> PreTrainedModel:
    """Remove the adapter and give back the untouched core."""
    return model.unload()


def save(model: PeftModel, directory: Path, name: str = "default") -> Path:
    """Write adapter `name`'s adapter_model.safetensors + adapter_config.json into `directory` and
    return the folder that holds them. Not atomic on its own: the store writes adapters through
    `artifacts.write_dir(target, lambda d: adapters.save(model, d))`, which is."""
    model.save_pretrained(str(directory), safe_serialization=True, selected_adapters=[name])
    return directory if name == "default" else directory / name  # PEFT puts other names in a subfolder


@contextmanager
def merged(model):
    """Fold the LoRA update into the base weights while sampling: the policy is fixed during a
    rollout, and 14 extra small matmuls per layer per decoded token cost more than the merge.
    A model without an adapter passes through unchanged."""
    if not isinstance(model, PeftModel):
        yield model
        return
    model.merge_adapter()
    try:
        yield model
    finally:
        model.unmerge_adapter()
