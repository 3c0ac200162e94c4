"""bfloat16 where the hardware multiplies it natively: a rollout sampler, and an RL update under autocast.

On a CPU with AVX512-BF16 or AMX, and on CUDA devices that support it, a bfloat16 matrix product runs
2-3x faster than a float32 one on the bundled core's shapes; elsewhere bfloat16 is emulated and slower,
so both uses fall back to float32 with one warning where it is not native (`native_bf16`).

- `BF16Sampler`: like the int8 sampler (models.quantized), at each rollout every LoRA layer's base
  weights plus the adapter's current update, and the output projection, are copied to bfloat16 and
  swapped in; each product casts its input to bfloat16 and its output back, so the residual stream, the
  norms and attention stay float32. The sampler is slightly off the float32 policy: the RL learner
  reports the gap (`sampler_kl`) and corrects it by truncated importance sampling, as for int8. Its one-token
  steps skip transformers' per-layer machinery (models.llama_step: one product for q/k/v and one for gate/up, the
  KV cache written in place) where the core is a Llama.
- `int8_sampler` (`--sampler int8`) where bfloat16 is native: the same twins, but a product of fewer than
  INT8_BELOW rows multiplies int8 weights with bfloat16 activations (`torch._weight_int8pack_mm`). At a
  few rows a decoding step only streams the weights, and int8 streams half bfloat16's bytes (about 2x float32
  at batch 1 on the bundled core, where bfloat16 alone gives 1.4-1.5x); at more rows the bfloat16 product from
  packed weights (models.bf16_linear) is the faster one. Elsewhere `--sampler int8` is models.quantized's W8A8 sampler.
- `for_serving`: the serving engine's own copy of a core turned to bfloat16 in place (`apiary serve
  --precision bf16`, or `int8`: int8 weights at a few rows); worker adapters load on it and run in float32.
- `update_autocast`: the RL update's forward and backward under `torch.autocast(bfloat16)`; the
  adapter's weights, its gradients and the optimiser stay float32, and so does the output projection
  (models.logprobs reads the log-probs from float32 logits).

Why not autocast for sampling too: it recasts every weight at every decoding step (0.7x float32 at batch 1
on the bundled core). Why not bfloat16 for every learner: distil_back and the anchor minimise a reverse KL
to the core of about 0.001 per token, and bfloat16 rounding alone puts 0.0007-0.0015 between the core and
itself (bundled core, 8 anchor prompts), so they, consolidation and every eval stay float32.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from torch import nn

from apiary.models.bf16_linear import BF16Linear
from apiary.models.llama_step import fast_steps
from apiary.models.quantized import Int8Sampler, merged_weight, swapped_bases
from apiary.models.quantized import int8_sampler as w8a8_sampler

PRECISIONS = ("float32", "bf16")
# serving: "int8", bfloat16 with int8 weights for products of fewer than INT8_BELOW rows (models.bf16.for_serving)
SERVING_PRECISIONS = ("float32", "bf16", "int8")
_NATIVE_FLAGS = ("avx512_bf16", "amx_bf16")
# int8 sampler: products of fewer rows multiply int8 weights. The bundled core's 30 layers at 1 / 4 / 8 / 16 / 32
# rows, int8 against bfloat16 (ms, this CPU, weights not in cache): 8.8 / 12.4 / 28.0 / 39.1 / 64.7 against
# 22.5 / 30.5 / 27.8 / 30.6 / 45.1 with F.linear (8 until 2026-12-03). Against bfloat16 products from packed weights
# (models.bf16_linear), the core's layers and output projection at 1 / 2 / 3 / 4 / 6 / 8 rows (ms, weights not in
# cache): int8 14.6 / 14.9 / 16.5 / 15.7 / 28.0 / 28.5, packed 18.0 / 16.9 / 16.4 / 15.7 / 16.1 / 16.2.
INT8_BELOW = 4


def check_precision(precision: str, precisions: tuple[str, ...] = PRECISIONS) -> None:
    if precision not in precisions:
        raise ValueError(f"precision must be one of {', '.join(precisions)} (got {precision!r})")


def native_bf16(device: torch.device, cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether `device` multiplies bfloat16 matrices natively: a CUDA device that says so, or an x86 CPU whose
    flags (Linux's /proc/cpuinfo) name AVX512-BF16 or AMX-BF16. Elsewhere False: bfloat16 would be emulated."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not sys.platform.startswith("linux") or not cpuinfo.exists():
        return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in _NATIVE_FLAGS)


def usable(precision: str, device: torch.device, what: str) -> bool:
    """True if `precision` is bf16 (or serving's int8) and the device runs bfloat16 natively; without it, one
    warning and False."""
    check_precision(precision, SERVING_PRECISIONS)
    if precision == "float32":
        return False
    if native_bf16(device):
        return True
    warnings.warn(f"{what} in bfloat16 is not available: this {device.type} has no native bfloat16 matrix product "
                  "(AVX512-BF16 or AMX). Using float32 instead.", RuntimeWarning, stacklevel=3)
    return False


class BF16Sampler:
    """Samples a PEFT model whose base is frozen from bfloat16 twins (see the module's docstring); with
    `int8_below` N > 0, products of fewer than N rows use int8 twins of the weights (BF16Linear); one-token steps
    run as models.llama_step's unless `fast_steps` is False (transformers' forward throughout)."""

    def __init__(self, model: PeftModel, int8_below: int = 0, fast_steps: bool = True):
        self.model, self.int8_below, self.fast_steps = model, int8_below, fast_steps
        self._loras = [m for m in model.modules() if isinstance(m, LoraLayer) and isinstance(m.base_layer, nn.Linear)]
        if not self._loras:
            raise ValueError("the bfloat16 sampler needs a model with LoRA adapters on linear layers")

    @contextmanager
    def sampling(self):
        """The model sampling as its bfloat16 twin (in eval mode); float32 with its adapter path again after."""
        head = self.model.get_output_embeddings()
        twin = lambda weight_O_I, bias_O: BF16Linear(weight_O_I, bias_O, self.int8_below)  # noqa: E731
        with swapped_bases(self.model, self._loras, lambda: [twin(merged_weight(lora), lora.base_layer.bias)
                                                              for lora in self._loras]) as model:
            self.model.set_output_embeddings(twin(head.weight, head.bias))
            try:
                with fast_steps(self.model.get_base_model()) if self.fast_steps else contextlib.nullcontext():
                    yield model
            finally:
                self.model.set_output_embeddings(head)


def bf16_sampler(model: PeftModel, precision: str = "bf16") -> BF16Sampler | None:
    """The bfloat16 sampler of `model`, or None (one warning) where the device has no native bfloat16."""
    return BF16Sampler(model) if usable(precision, model.device, "sampling") else None


def int8_sampler(model: PeftModel, tokenizer) -> BF16Sampler | Int8Sampler | None:
    """The fastest int8 sampler this device has: where bfloat16 is native, int8 weights with bfloat16
    activations below INT8_BELOW rows and bfloat16 twins above (BF16Sampler); elsewhere W8A8
    (models.quantized); None (one warning) where neither runs."""
    if native_bf16(model.device) and hasattr(torch, "_weight_int8pack_mm"):
        return BF16Sampler(model, int8_below=INT8_BELOW)
    return w8a8_sampler(model, tokenizer)


def update_autocast(device: torch.device, on: bool):
    """The RL update's forward and backward under bfloat16 autocast (`on`), else nothing changes."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if on else contextlib.nullcontext()


def for_serving(model: nn.Module, int8_below: int = 0) -> None:
    """Make `model` serve in bfloat16, in place (a model no one trains: the serving engine's own core): every
    linear layer's weights, the output projection's included, become bfloat16, and each layer multiplies as a
    BF16Linear (taking and giving float32; int8 weights below `int8_below` rows), so the embeddings, the
    residual stream, the norms and attention stay float32 and PEFT adapters load on the layers as on float32
    ones. The output projection shares its weights with the input embeddings; it gets its own bfloat16 copy
    and the embeddings stay float32."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.dtype == torch.float32:
            module.weight = nn.Parameter(module.weight.detach().to(torch.bfloat16), requires_grad=False)
            if module.bias is not None:
                module.bias = nn.Parameter(module.bias.detach().to(torch.bfloat16), requires_grad=False)
            module.forward = BF16Linear(module.weight, module.bias, int8_below).forward  # the same bfloat16 tensors
