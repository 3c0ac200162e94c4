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

from apiary.models.prompt_format import prompt_ids

SAMPLERS = ("float32", "int8")
FLOAT32_LAYERS = ("down_proj",)  # its inputs carry the model's massive activations: in int8 it quadrupled the KL
SMOOTH_ALPHA = 0.5
# Calibration prompts for the smoothing factors: outlier channels are the model's, not the job's.
CALIBRATION = ("Explain how a bicycle works, step by step.", "What is 17 + 25? Answer with only the number.",
               "Write a short poem about the sea.", "List three countries in Europe and their capitals.")


class BackendMissing(RuntimeError):
    """This torch cannot multiply int8 matrices here."""


def check_sampler(sampler: str) -> None:
    """A clear error for a sampler that is not one of SAMPLERS."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, not {sampler!r}")


def _int8_matmul():
    """torch's int8 x int8 -> int32 matrix product, or BackendMissing (split out so a test can take it away)."""
    try:
        return torch._int_mm
    except AttributeError as err:
        raise BackendMissing(f"torch {torch.__version__} has no int8 matrix product (torch._int_mm)") from err


class Int8Linear(nn.Module):
    """A frozen linear layer in int8 (W8A8): weights quantised once per output channel (scale = the
    channel's largest |w| / 127), activations per token at every call (scale = the token's largest |x| /
    127), one int8 x int8 -> int32 product, rescaled to float32. Per-token scales keep a token with huge
    activations from crushing every other token's resolution; `smooth_I` (SmoothQuant) moves the input
    channels' outliers into the weights: W x = (W diag(s)) (x / s), the same product, easier to quantise."""

    def __init__(self, linear: nn.Linear, smooth_I: torch.Tensor | None = None):
        super().__init__()
        self.matmul = _int8_matmul()
        weight_O_I = linear.weight.detach().float()
        if smooth_I is not None:
            weight_O_I = weight_O_I * smooth_I[None, :]
        scale_O = weight_O_I.abs().amax(dim=1).clamp(min=1e-8) / 127
        self.register_buffer("weight_I_O", (weight_O_I / scale_O[:, None]).round().to(torch.int8).t().contiguous())
        self.register_buffer("scale_O", scale_O)
        self.register_buffer("unsmooth_I", None if smooth_I is None else 1 / smooth_I)
        self.register_buffer("bias_O", None if linear.bias is None else linear.bias.detach().float().clone())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_N_I = x.reshape(-1, self.in_features).float()
        if self.unsmooth_I is not None:
            x_N_I = x_N_I * self.unsmooth_I
        scale_N_1 = x_N_I.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
        y_N_O = self.matmul((x_N_I / scale_N_1).round().to(torch.int8), self.weight_I_O).float() * scale_N_1 * self.scale_O
        if self.bias_O is not None:
            y_N_O = y_N_O + self.bias_O
        return y_N_O.reshape(*x.shape[:-1], self.out_features)


def smoothing(linear: nn.Linear, input_max_I: torch.Tensor, alpha: float = SMOOTH_ALPHA) -> torch.Tensor:
    """SmoothQuant's per-input-channel factors s = max|x|^alpha / max|w|^(1 - alpha): alpha 0.5 splits each
    channel's range evenly between the activations and the weights."""
    weight_max_I = linear.weight.detach().float().abs().amax(dim=0).clamp(min=1e-5)
    return (input_max_I.clamp(min=1e-5) ** alpha / weight_max_I ** (1 - alpha)).clamp(min=1e-5)


def input_maxima(model: PeftModel, layers: list[LoraLayer], calibration: list[list[int]]) -> list[torch.Tensor]:
    """Each layer's largest |input| per channel over float32 forwards of the calibration prompts."""
    maxima: dict[int, torch.Tensor] = {}

    def record(layer, args):
        seen_I = args[0].detach().reshape(-1, args[0].shape[-1]).abs().amax(dim=0).float()
        maxima[id(layer)] = torch.maximum(maxima[id(layer)], seen_I) if id(layer) in maxima else seen_I

    hooks = [layer.register_forward_pre_hook(record) for layer in layers]
    try:
        with torch.no_grad():
            for ids in calibration:
                model(input_ids=torch.tensor([ids], device=model.device))
    finally:
        for hook in hooks:
            hook.remove()
    return [maxima[id(layer)] for layer in layers]


@dataclass
class _Swap:
    layer: LoraLayer
    float_base: nn.Module
    int8_base: nn.Module


class Int8Sampler:
    """The int8 twins of a PEFT model's frozen linear layers (but FLOAT32_LAYERS), swapped in only while
    sampling; smoothed (SmoothQuant) from the float32 model's activations on `calibration` prompts."""

    def __init__(self, model: PeftModel, calibration: list[list[int]]):
        self.model = model
        layers = [m for name, m in model.named_modules() if isinstance(m, LoraLayer) and isinstance(m.base_layer, nn.Linear)
                  and not name.endswith(FLOAT32_LAYERS)]
        if not layers:
            raise ValueError("the int8 sampler needs a model with LoRA adapters on linear layers")
        _int8_matmul()  # BackendMissing before the calibration's forwards, if it is missing
        maxima = input_maxima(model, layers, calibration)
        self._swaps = [_Swap(layer, layer.base_layer, Int8Linear(layer.base_layer, smoothing(layer.base_layer, max_I)))
                       for layer, max_I in zip(layers, maxima)]
        self._check_runs()

    def _check_runs(self) -> None:
        """Run one twin once: a CPU without the kernels fails here, not in the middle of a rollout."""
        twin = self._swaps[0].int8_base
        try:
            with torch.inference_mode():
                twin(torch.zeros(1, self._swaps[0].float_base.in_features))
        except (RuntimeError, NotImplementedError) as err:
            raise BackendMissing(f"torch's int8 matrix product does not run here ({err})") from err

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


def int8_sampler(model: PeftModel, tokenizer) -> Int8Sampler | None:
    """The int8 sampler of `model` (calibrated on CALIBRATION), or None (and one warning saying why) where
    this torch cannot multiply int8 matrices: the caller then samples in float32."""
    calibration = [prompt_ids(tokenizer, [{"role": "user", "content": text}]) for text in CALIBRATION]
    try:
        return Int8Sampler(model, calibration)
    except BackendMissing as err:
        warnings.warn(f"int8 sampling is not available: {err}. Sampling in float32 instead.", RuntimeWarning, stacklevel=2)
        return None
