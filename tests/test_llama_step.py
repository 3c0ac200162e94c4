"""The samplers' one-token step without transformers' machinery (models.llama_step) is transformers' step."""

import pytest
import torch

from apiary.models import bf16, llama_step
from apiary.models.generate import SamplingParams, sample
from test_quantized_sampler import prompts_of, worker  # noqa: F401 - the fixture


def _samples(model, prompts, pad):
    """Two samples per prompt, 8 tokens; a row also ends at its first token divisible by 5 (rows leave the batch)."""
    return sample(model, prompts, 2, SamplingParams(max_new_tokens=8, temperature=1.0), [], pad,
                  torch.Generator().manual_seed(0), done=lambda tokens: tokens[-1] % 5 == 0)


@pytest.mark.parametrize("int8_below, rows", [(0, 8), (8, 3)])
def test_a_fast_step_writes_what_transformers_step_writes(tiny_core, worker, monkeypatch, int8_below, rows):
    """Prompts of several lengths (left-padded rows), two samples each, bfloat16 products (8 prompts) or int8
    ones (3 prompts, 6 rows), rows leaving early, the cache's buffers growing every 3 positions: the same tokens,
    and log-probs within 1e-4 (the norms' float32 rounding)."""
    monkeypatch.setattr(llama_step, "ROOM", 3)
    prompts, pad = prompts_of(tiny_core.tokenizer)[:rows], tiny_core.tokenizer.pad_token_id
    assert len({len(p) for p in prompts}) > 1
    with bf16.BF16Sampler(worker, int8_below=int8_below).sampling() as model:
        assert "forward" in model.get_base_model().__dict__  # routed through the fast step
        fast = _samples(model, prompts, pad)
    with bf16.BF16Sampler(worker, int8_below=int8_below, fast_steps=False).sampling() as model:
        assert "forward" not in model.get_base_model().__dict__
        slow = _samples(model, prompts, pad)
    assert [s.tokens for s in fast] == [s.tokens for s in slow]
    assert len({len(s.tokens) for s in fast}) > 1  # rows left at different steps
    gaps = [abs(a - b) for f, s in zip(fast, slow) for a, b in zip(f.logprobs, s.logprobs)]
    assert max(gaps) < 1e-4, max(gaps)
    assert "forward" not in worker.get_base_model().__dict__  # transformers' forward is back


def test_models_the_step_does_not_describe_keep_transformers_forward(tiny_core, worker):
    lm = worker.get_base_model()
    assert not llama_step.describes(lm)  # float32 LoRA layers, not bfloat16 twins
    with llama_step.fast_steps(lm):
        assert "forward" not in lm.__dict__
    with bf16.BF16Sampler(worker).sampling():
        assert llama_step.describes(lm)
        lm.config.hidden_act = "gelu"
        try:
            assert not llama_step.describes(lm)
        finally:
            lm.config.hidden_act = "silu"


def test_fused_products_hold_the_weights_once(tiny_core, worker):
    """Each layer's q/k/v twins read rows of the fused twin's weights (no second copy) and give what they gave."""
    with bf16.BF16Sampler(worker).sampling() as model:
        attention = model.get_base_model().model.layers[0].self_attn
        x = torch.randn(2, attention.q_proj.weight_O_I.shape[1])
        before = [p(x) for p in (attention.q_proj, attention.k_proj, attention.v_proj)]
        step = llama_step.LlamaStep(model.get_base_model())
        fused = step.layers[0].qkv.weight_O_I
        assert attention.k_proj.weight_O_I.untyped_storage().data_ptr() == fused.untyped_storage().data_ptr()
        assert all(torch.equal(a, p(x)) for a, p in zip(before, (attention.q_proj, attention.k_proj, attention.v_proj)))
        assert torch.equal(step.layers[0].qkv(x), torch.cat(before, dim=-1))
