"""Sampling a worker from int8 weights while it learns in float32.

While a worker learns, its core is frozen and only its LoRA adapter trains. So the core's linear
layers are quantised to int8 once (per output channel, symmetric), and during a rollout each LoRA
layer's `base_layer` is swapped for its int8 twin: PEFT's LoRA forward calls `base_layer(x)` and
adds the adapter's current float32 path on top, so the sampler always sees the adapter as it is now.
On leaving `Int8Sampler.sampling()` the float32 layers are back, and the learner's loss (and its
gradients) are the float32 model's as before. The sampled policy is therefore slightly off the
trained one; the RL learner records the sampler's log-probabilities and corrects for the gap with
truncated importance sampling (learners.grpo).

The kernels: torch's dynamic int8 linear (`torch.ao.nn.quantized.dynamic.Linear`: int8 weights,
activations quantised per call, fbgemm/x86 on these CPUs). Chosen by measurement on the bundled core
(docs/sampler.json, `python -m apiary.bench.sampler`): on this 2-core CPU it sampled about 2x faster
than float32 at batch 1 and 32, where torchao 0.18's int8 weight-only and dynamic configs gained
1.1-1.4x and `torch._weight_int8pack_mm` with float32 activations was 8x slower than float32; and it
installs nothing. torch marks these quantized tensors deprecated (torchao is their successor): where
they are missing or refuse to run, `int8_sampler` says so once and the learner samples in float32.
The output projection (tied to the embeddings) and the embeddings stay float32.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from torch import nn

SAMPLERS = ("float32", "int8")


class BackendMissing(RuntimeError):
    """This torch cannot run int8 linear layers (no quantized kernels, or no engine for this CPU)."""


def check_sampler(sampler: str) -> None:
    """A clear error for a sampler that is not one of SAMPLERS."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, not {sampler!r}")


def _dynamic_linear_class():
    """torch's dynamic int8 Linear, or BackendMissing (split out so a test can take the backend away)."""
    try:
        from torch.ao.nn.quantized.dynamic import Linear
    except ImportError as err:
        raise BackendMissing(f"torch {torch.__version__} has no torch.ao.nn.quantized.dynamic ({err})") from err
    if torch.backends.quantized.engine == "none":
        raise BackendMissing("torch has no quantized engine for this CPU")
    return Linear


def int8_linear(linear: nn.Linear) -> nn.Module:
    """An int8 twin of `linear`: weights quantised per output row (scale = the row's largest |w| / 127),
    the bias kept in float32. Raises BackendMissing where torch cannot build or run it."""
    dynamic_linear = _dynamic_linear_class()
    weight_O_I = linear.weight.detach().float()
    scales_O = (weight_O_I.abs().amax(dim=1).clamp(min=1e-8) / 127).double()
    try:
        with warnings.catch_warnings():  # torch's own deprecation notice for quantized tensors (see the module docstring)
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            qweight = torch.quantize_per_channel(weight_O_I, scales_O, torch.zeros_like(scales_O, dtype=torch.long),
                                                 axis=0, dtype=torch.qint8)
            twin = dynamic_linear(linear.in_features, linear.out_features, bias_=linear.bias is not None, dtype=torch.qint8)
            twin.set_weight_bias(qweight, None if linear.bias is None else linear.bias.detach().float())
    except RuntimeError as err:
        raise BackendMissing(f"torch could not build an int8 linear layer ({err})") from err
    return twin


@dataclass
class _Swap:
    layer: LoraLayer
    float_base: nn.Module
    int8_base: nn.Module


class Int8Sampler:
    """The int8 twins of a PEFT model's frozen linear layers, swapped in only while sampling."""

    def __init__(self, model: PeftModel):
        self.model = model
        self._swaps = [_Swap(m, m.base_layer, int8_linear(m.base_layer)) for m in model.modules()
                       if isinstance(m, LoraLayer) and isinstance(m.base_layer, nn.Linear)]
        if not self._swaps:
            raise ValueError("the int8 sampler needs a model with LoRA adapters on linear layers")
        self._check_runs()

    def _check_runs(self) -> None:
        """Run one twin once: a CPU without the kernels fails here, not in the middle of a rollout."""
        twin = self._swaps[0].int8_base
        try:
            with torch.inference_mode():
                twin(torch.zeros(1, self._swaps[0].float_base.in_features))
        except RuntimeError as err:
            raise BackendMissing(f"torch's int8 linear layer does not run here ({err})") from err

    @contextmanager
    def sampling(self):
        """The model with int8 base layers and its adapters unmerged on top (in eval mode); float32 again after."""
        if any(s.layer.merged for s in self._swaps):
            raise RuntimeError("unmerge the adapter before sampling in int8: a merged adapter lives in the float32 weights")
        self.model.eval()
        for swap in self._swaps:
            swap.layer.base_layer = swap.int8_base
        try:
            yield self.model
        finally:
            for swap in self._swaps:
                swap.layer.base_layer = swap.float_base


def int8_sampler(model: PeftModel) -> Int8Sampler | None:
    """The int8 sampler of `model`, or None (and one warning saying why) where this torch cannot run int8
    layers: the caller then samples in float32."""
    try:
        return Int8Sampler(model)
    except BackendMissing as err:
        warnings.warn(f"int8 sampling is not available: {err}. Sampling in float32 instead.", RuntimeWarning, stacklevel=2)
        return None
