"""Sampling a worker from int8 weights while it learns in float32 (W8A8: where the CPU multiplies bfloat16
natively, `--sampler int8` is models.bf16's int8-weight sampler instead, faster and closer to float32).

While a worker learns, its core is frozen and only its LoRA adapter trains. So on each rollout
(`Int8Sampler.sampling()`) every LoRA layer's base weights plus the adapter's current update are
quantised to int8 and swapped in for the layer (its update is in the twin's weights; running it unmerged
cost a quarter of the speed). On leaving, the float32 layers
and the adapter path are back, so the learner's loss and gradients are the float32 model's as before.
The sampled policy is slightly off the trained one; the decoder records each sampled token's log-prob,
and the RL learner reports the gap and corrects its loss by truncated importance sampling
(learners.grpo).

The arithmetic (W8A8): weights per output channel, activations per token at every call, one
`torch._int_mm` (int8 x int8 -> int32) per layer. Per-token scales keep a token with huge activations
from crushing the others' resolution, and SmoothQuant factors (calibrated once on CALIBRATION) move the
input channels' outliers into the weights. `down_proj` stays float32: its inputs carry the model's
massive activations, and in int8 it quadrupled the sampler's KL to float32 (0.026 against 0.0067 per
token on the bundled core). The output projection and the embeddings stay float32.

Why this and not the others (rough figures on the bundled core, 2 loaded CPU cores, same process;
docs/benchmarks.md has the quiet run of `python -m apiary.bench.sampler`): torch's deprecated dynamic
int8 Linear (`torch.ao...quantize_dynamic`, per-tensor activations) was about 2x faster than float32 but
wrong (0 of 8 greedy replies equal, per-layer errors up to 14%); torchao 0.18's int8 weight-only and
dynamic configs gained 1.1-1.4x and 0.6-1.4x and add a dependency; `torch._weight_int8pack_mm` with
float32 activations was 8x slower than float32. This one installs nothing. Where torch has no
`_int_mm` or it does not run, `int8_sampler` says so once and the learner samples in float32.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from torch import nn

from apiary.models.prompt_format import prompt_ids

SAMPLERS = ("float32", "int8", "bf16")  # bf16: models.bf16
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

    def __init__(self, weight_O_I: torch.Tensor, bias_O: torch.Tensor | None = None, smooth_I: torch.Tensor | None = None):
        super().__init__()
        self.matmul = _int8_matmul()
        weight_O_I = weight_O_I.detach().float()
        if smooth_I is not None:
            weight_O_I = weight_O_I * smooth_I[None, :]
        scale_O = weight_O_I.abs().amax(dim=1).clamp(min=1e-8) / 127
        self.register_buffer("weight_I_O", (weight_O_I / scale_O[:, None]).round().to(torch.int8).t().contiguous())
        self.register_buffer("scale_O", scale_O)
        self.register_buffer("unsmooth_I", None if smooth_I is None else 1 / smooth_I)
        self.register_buffer("bias_O", None if bias_O is None else bias_O.detach().float().clone())
        self.out_features, self.in_features = weight_O_I.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_N_I = x.reshape(-1, self.in_features).float()
        if self.unsmooth_I is not None:
            x_N_I = x_N_I * self.unsmooth_I
        scale_N_1 = x_N_I.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
        y_N_O = self.matmul((x_N_I / scale_N_1).round().to(torch.int8), self.weight_I_O).float() * scale_N_1 * self.scale_O
        if self.bias_O is not None:
            y_N_O = y_N_O + self.bias_O
        return y_N_O.reshape(*x.shape[:-1], self.out_features)


class MergedLinear(nn.Module):
    """A float32 linear layer with the adapter's update folded into a copy of its weights (nothing to train)."""

    def __init__(self, weight_O_I: torch.Tensor, bias_O: torch.Tensor | None):
        super().__init__()
        self.weight_O_I, self.bias_O = weight_O_I, bias_O

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_O_I, self.bias_O)


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
class _Layer:
    """A LoRA layer of the model and its smoothing factors (None: it samples in float32, FLOAT32_LAYERS)."""

    lora: LoraLayer
    smooth_I: torch.Tensor | None


class Int8Sampler:
    """Samples a PEFT model whose base is frozen from int8 weights: on each entry to `sampling()`, every
    LoRA layer's base weights plus the adapter's current update are quantised (but FLOAT32_LAYERS, merged
    in float32) and swapped in for the layer; on leaving, the LoRA layers with their float32 bases and adapter
    path are back. Smoothing factors come once from float32 forwards of `calibration`."""

    def __init__(self, model: PeftModel, calibration: list[list[int]]):
        self.model = model
        named = [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer) and isinstance(m.base_layer, nn.Linear)]
        quantised = [m for name, m in named if not name.endswith(FLOAT32_LAYERS)]
        if not quantised:
            raise ValueError("the int8 sampler needs a model with LoRA adapters on linear layers")
        _int8_matmul()  # BackendMissing before the calibration's forwards, if it is missing
        smooth = {id(m): smoothing(m.base_layer, max_I) for m, max_I in zip(quantised, input_maxima(model, quantised, calibration))}
        self._layers = [_Layer(m, smooth.get(id(m))) for _, m in named]
        self._check_runs(next(layer for layer in self._layers if layer.smooth_I is not None))

    def _check_runs(self, layer: _Layer) -> None:
        """Run one twin once: a CPU without the kernels fails here, not in the middle of a rollout."""
        try:
            with torch.inference_mode():
                self._twin(layer)(torch.zeros(1, layer.lora.base_layer.in_features))
        except (RuntimeError, NotImplementedError) as err:
            raise BackendMissing(f"torch's int8 matrix product does not run here ({err})") from err

    def _twin(self, layer: _Layer) -> nn.Module:
        """The layer's base with the adapter's current update merged in: int8, or float32 for FLOAT32_LAYERS."""
        base = layer.lora.base_layer
        with torch.no_grad():
            weight_O_I = merged_weight(layer.lora)
            if layer.smooth_I is not None:
                return Int8Linear(weight_O_I, base.bias, layer.smooth_I)
            return MergedLinear(weight_O_I, None if base.bias is None else base.bias.detach())

    @contextmanager
    def sampling(self):
        """The model sampling as its int8 twin (in eval mode); float32 with its adapter path again after."""
        loras = [layer.lora for layer in self._layers]
        with swapped_bases(self.model, loras, lambda: [self._twin(layer) for layer in self._layers]) as model:
            yield model


def merged_weight(lora: LoraLayer) -> torch.Tensor:
    """A LoRA layer's base weights plus its active adapters' current updates, in float32 (a new tensor)."""
    weight_O_I = lora.base_layer.weight.detach().float()
    for name in lora.active_adapters:
        if name in lora.lora_A:
            weight_O_I = weight_O_I + lora.get_delta_weight(name).float()
    return weight_O_I


@contextmanager
def swapped_bases(model: PeftModel, loras: list[LoraLayer], make_twins):
    """The model (in eval mode) with each LoRA layer replaced by its twin from `make_twins()` (the adapter's update is
    in the twins' weights, and PEFT's per-layer wrapper is out of the way: 8% faster at batch 1); the LoRA layers,
    with their float32 bases and adapter path, are back after."""
    if any(lora.merged for lora in loras):
        raise RuntimeError("unmerge the adapter before sampling from twins: a merged adapter lives in the float32 weights")
    model.eval()
    name_of = {id(module): name for name, module in model.named_modules()}
    places = [(model.get_submodule(parent), attr) for parent, _, attr in (name_of[id(lora)].rpartition(".") for lora in loras)]
    with torch.no_grad():
        twins = make_twins()
    for (parent, attr), twin in zip(places, twins):
        setattr(parent, attr, twin)
    try:
        yield model
    finally:
        for (parent, attr), lora in zip(places, loras):
            setattr(parent, attr, lora)


def int8_sampler(model: PeftModel, tokenizer) -> Int8Sampler | None:
    """The int8 sampler of `model` (calibrated on CALIBRATION), or None (and one warning saying why) where
    this torch cannot multiply int8 matrices: the caller then samples in float32."""
    calibration = [prompt_ids(tokenizer, [{"role": "user", "content": text}]) for text in CALIBRATION]
    try:
        return Int8Sampler(model, calibration)
    except BackendMissing as err:
        warnings.warn(f"int8 sampling is not available: {err}. Sampling in float32 instead.", RuntimeWarning, stacklevel=2)
        return None
