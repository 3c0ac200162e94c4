"""A frozen linear layer in bfloat16, with int8 weights for products of a few rows (models.bf16's samplers and
serving, models.llama_step's fused products).

Products of more rows read the weights in oneDNN's own blocked layout, made once per layer
(`torch.ops.mkldnn._reorder_linear_weight`, the packing torch.compile's CPU backend does): `F.linear` on bfloat16
reorders the weights at every call. Measured on this repo's CPU (AVX512-BF16, 2 threads), the same results to
the bit: 1.15-1.4x at 32 rows (the 49152-row output projection 7.5 -> 5.4 ms), 1.05x at 2048 rows; packing
the bundled core's layers takes about 60 ms. Where torch has no oneDNN (or the weights are not on the CPU),
`F.linear`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PACKS = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class BF16Linear(nn.Module):
    """A frozen linear layer in bfloat16 that takes and gives float32 (nothing to train). With `int8_below` N > 0,
    a product of fewer than N rows multiplies int8 weights instead (per output channel, quantised from the
    bfloat16 copy at its first such product): at a few rows the product only streams the weights, and int8
    streams half the bytes (`torch._weight_int8pack_mm`, bfloat16 activations); at more rows bfloat16 is faster."""

    def __init__(self, weight_O_I: torch.Tensor, bias_O: torch.Tensor | None, int8_below: int = 0):
        super().__init__()
        self.weight_O_I = weight_O_I.detach().to(torch.bfloat16)
        self.bias_O = None if bias_O is None else bias_O.detach().to(torch.bfloat16)
        # torch's kernel reads the inputs in blocks of 16 and crashes the process on other widths
        self.int8_below, self._int8 = (int8_below if self.weight_O_I.shape[1] % 16 == 0 else 0), None
        self._packed = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_N_I = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        if x_N_I.shape[0] < self.int8_below:
            y_N_O = torch._weight_int8pack_mm(x_N_I.contiguous(), *self.int8_weights())
            y_N_O = y_N_O if self.bias_O is None else y_N_O + self.bias_O
        elif PACKS and x_N_I.device.type == "cpu":
            y_N_O = torch.ops.mkldnn._linear_pointwise(x_N_I, self.packed_weights(), self.bias_O, "none", [], "")
        else:
            y_N_O = F.linear(x_N_I, self.weight_O_I, self.bias_O)
        return y_N_O.reshape(*x.shape[:-1], -1).to(x.dtype)

    def packed_weights(self) -> torch.Tensor:
        """The bfloat16 weights in oneDNN's layout (see the module's docstring), made once; the row count given is
        only a hint (the products of every count are the same)."""
        if self._packed is None:
            self._packed = torch.ops.mkldnn._reorder_linear_weight(self.weight_O_I, 32)
        return self._packed

    def int8_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """int8 weights and their bfloat16 scale per output channel (largest |w| / 127), made once."""
        if self._int8 is None:
            weight_O_I = self.weight_O_I
            int8_O_I = torch.empty(weight_O_I.shape, dtype=torch.int8, device=weight_O_I.device)
            scale_O = torch.empty(weight_O_I.shape[0], device=weight_O_I.device)
            for at in range(0, weight_O_I.shape[0], 1024):  # a block at a time stays in cache: 2-3x faster
                block = weight_O_I[at:at + 1024].float()
                scale_O[at:at + 1024] = block.abs().amax(dim=1).clamp(min=1e-8) / 127
                int8_O_I[at:at + 1024] = block.div_(scale_O[at:at + 1024, None]).round_()
            self._int8 = (int8_O_I, scale_O.to(torch.bfloat16))
        return self._int8
