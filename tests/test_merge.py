"""Merging adapters gives the expected weight updates on tiny, hand-set adapters (golden numbers)."""

import pytest
import torch

from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.merge import delta, merge

MODULE = "base_model.model.model.layers.0.self_attn.q_proj"


def _adapter(tiny_core, path, value):
    """A rank-1 adapter whose update to every layer is `value` in every entry (scaling 1: B = value, A = 1)."""
    model = adapters.attach(tiny_core.model, LoraSpec(rank=1, alpha=1))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name:
                p.fill_(1.0)
            elif "lora_B" in name:
                p.fill_(value)
    adapters.save(model, path)  # a plain directory: no atomic write needed in a test
    adapters.detach(model)
    return path


@pytest.fixture
def two_adapters(tmp_path, tiny_core):
    return [_adapter(tiny_core, tmp_path / "a", 0.3), _adapter(tiny_core, tmp_path / "b", -0.1)]


@pytest.mark.parametrize("method, weights, expected", [
    ("linear", [0.5, 0.5], 0.5 * 0.3 + 0.5 * -0.1),  # 0.10
    ("linear", [1.0, 2.0], 0.3 - 0.2),
    ("ties", [1.0, 1.0], 0.3),  # density 1: the sign elected is +, only the agreeing 0.3 is kept
])
def test_merges_match_hand_computed_updates(tiny_core, two_adapters, method, weights, expected):
    model = merge(tiny_core.model, two_adapters, weights, method, density=1.0)
    try:
        got = delta(model, MODULE)
        torch.testing.assert_close(got, torch.full_like(got, expected), atol=1e-5, rtol=1e-4)
    finally:
        adapters.detach(model)


def test_dare_drops_entries_at_random_and_rescales_the_rest(tiny_core, two_adapters):
    """Density 0.5: each entry of each update survives with probability 0.5, doubled; the sum of
    0.3 (x2 = 0.6) and -0.1 (x2 = -0.2) is then 0.4, 0.6, -0.2 or 0, each about a quarter of the time."""
    model = merge(tiny_core.model, two_adapters, [1.0, 1.0], "dare_linear", density=0.5, rank=32)
    try:  # the rank is capped at the smallest layer side (16); exact on a 16 x 32 layer
        got = delta(model, "base_model.model.model.layers.0.self_attn.k_proj").detach()
        values = torch.tensor([0.4, 0.6, -0.2, 0.0])
        nearest = (got.reshape(-1, 1) - values).abs().argmin(1)
        torch.testing.assert_close(values[nearest], got.reshape(-1), atol=1e-4, rtol=0)
        shares = torch.bincount(nearest, minlength=4).float() / nearest.numel()
        assert all(0.15 < float(s) < 0.35 for s in shares)
    finally:
        adapters.detach(model)


def test_unknown_method_is_refused(tiny_core, two_adapters):
    with pytest.raises(ValueError, match="unknown merge method"):
        merge(tiny_core.model, two_adapters, method="average")
