"""One decoding step of a Llama-architecture core in a few plain torch ops, for the bfloat16 / int8 samplers.

At one row, a decoding step of the bundled core on the int8 sampler spent about 14 of its 33 ms in the
matrix products and the rest in transformers' per-layer machinery: the mask builder, the attention
interface, six ops per RMSNorm, three products where one would do. `LlamaStep` computes the same step
(embedding, per layer RMSNorm, one product for q/k/v, rotary positions, the KV cache's update, SDPA, the
output projection, RMSNorm, one product for gate/up, SiLU, down, the final norm and the output
projection) from the model's own modules, so a sampler's twins (models.bf16_linear.BF16Linear) do the products.
`fast_steps(model)` routes the decoder's one-token steps through it; prompts (more than one new token)
still go through transformers' forward, and so does any model this step does not describe
(`describes`: another architecture, biases, another activation or rotary scaling). The float32
reference path never uses it.

Why not torch.compile: compiling the same step took 11 minutes on 2 cores for 1.5x at one row, and every
rollout's new twins would need it again.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from apiary.models.bf16_linear import BF16Linear

ROOM = 64  # positions a cache layer's buffers grow by at once (models.llama_step._append)


@dataclass
class StepOutput:
    """What the decoder reads from a forward: the next-token logits and the updated KV cache."""

    logits: torch.Tensor
    past_key_values: object


def describes(causal_lm: nn.Module) -> bool:
    """Whether LlamaStep computes this model's step: a Llama without biases, SiLU gates, plain rotary
    positions, and every projection a bfloat16 twin (the samplers swap them in)."""
    config = causal_lm.config
    if (getattr(config, "model_type", None) != "llama" or config.attention_bias or getattr(config, "mlp_bias", False)
            or config.hidden_act != "silu" or (getattr(config, "rope_parameters", None) or {}).get("rope_type") != "default"):
        return False
    projections = [p for layer in causal_lm.model.layers for p in (
        layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.self_attn.o_proj,
        layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj)]
    return all(isinstance(p, BF16Linear) and p.bias_O is None for p in projections)


def _fused(twins: list[BF16Linear]) -> BF16Linear:
    """One twin multiplying the rows of all `twins` (one product instead of several); each of `twins` then
    reads its rows of the fused weights, so they are not held twice."""
    weight_O_I = torch.cat([twin.weight_O_I for twin in twins])
    at = 0
    for twin in twins:
        twin.weight_O_I, at = weight_O_I[at:at + twin.weight_O_I.shape[0]], at + twin.weight_O_I.shape[0]
    return BF16Linear(weight_O_I, None, twins[0].int8_below)


@dataclass
class _Layer:
    input_norm_D: torch.Tensor
    qkv: BF16Linear
    o_proj: nn.Module
    post_norm_D: torch.Tensor
    gate_up: BF16Linear
    down_proj: nn.Module


class LlamaStep:
    """The decoding step of `causal_lm` (see `describes`) for one new token per row."""

    def __init__(self, causal_lm: nn.Module):
        config, model = causal_lm.config, causal_lm.model
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.hidden, self.eps = config.hidden_size, config.rms_norm_eps
        self.embed, self.norm_D, self.head = model.embed_tokens, model.norm.weight, causal_lm.lm_head
        self.inv_freq = model.rotary_emb.inv_freq.float()
        self.layers = [_Layer(layer.input_layernorm.weight,
                              _fused([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]),
                              layer.self_attn.o_proj, layer.post_attention_layernorm.weight,
                              _fused([layer.mlp.gate_proj, layer.mlp.up_proj]), layer.mlp.down_proj)
                       for layer in model.layers]

    def __call__(self, input_ids_B_1: torch.Tensor, attention_mask_B_T: torch.Tensor, position_B_1: torch.Tensor,
                 cache) -> StepOutput:
        B, H, K, d = input_ids_B_1.shape[0], self.heads, self.kv_heads, self.head_dim
        h_B_1_D = self.embed(input_ids_B_1)
        angles_B_1_d = (position_B_1[..., None].float() * self.inv_freq).repeat(1, 1, 2)[:, None]
        cos, sin = angles_B_1_d.cos(), angles_B_1_d.sin()
        # the new column is the row's own token: every row attends to at least it
        mask_B_1_1_T = torch.zeros(attention_mask_B_T.shape, dtype=h_B_1_D.dtype, device=h_B_1_D.device).masked_fill_(
            attention_mask_B_T == 0, float("-inf"))[:, None, None, :]
        for i, layer in enumerate(self.layers):
            x = F.rms_norm(h_B_1_D, (self.hidden,), layer.input_norm_D, self.eps)
            q, k, v = layer.qkv(x).split((H * d, K * d, K * d), dim=-1)
            # the query heads sharing a key/value head read it as one group of H / K queries (heads are numbered
            # group by group): SDPA then reads each cached key once, where enable_gqa repeats them (1.1-1.2x)
            q, k, v = q.view(B, K, H // K, d), k.view(B, 1, K, d).transpose(1, 2), v.view(B, 1, K, d).transpose(1, 2)
            k, v = _append(cache.layers[i], _rotated(k, cos, sin), v)
            attended = F.scaled_dot_product_attention(_rotated(q, cos, sin), k, v, attn_mask=mask_B_1_1_T)
            h_B_1_D = h_B_1_D + layer.o_proj(attended.reshape(B, 1, H * d))
            gate, up = layer.gate_up(F.rms_norm(h_B_1_D, (self.hidden,), layer.post_norm_D, self.eps)).chunk(2, dim=-1)
            h_B_1_D = h_B_1_D + layer.down_proj(F.silu(gate) * up)
        return StepOutput(self.head(F.rms_norm(h_B_1_D, (self.hidden,), self.norm_D, self.eps)), cache)


def _append(layer, keys_B_K_1_d: torch.Tensor, values_B_K_1_d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A KV cache layer's keys and values one position longer, written in place: they are views of buffers with
    ROOM spare positions (made when the layer's tensors are not such views, as after transformers' update or the
    decoder's reshuffles), so a step writes one position where transformers' update copies the whole cache."""
    keys, values, length = layer.keys, layer.values, layer.keys.shape[-2]
    room = getattr(layer, "room", None)
    if room is None or room[0].shape[-2] <= length or room[0].data_ptr() != keys.data_ptr() or room[0].stride() != keys.stride():
        room = tuple(torch.empty((*x.shape[:-2], length + ROOM, x.shape[-1]), dtype=x.dtype, device=x.device)
                     for x in (keys, values))
        room[0][..., :length, :], room[1][..., :length, :] = keys, values
        layer.room = room
    room[0][..., length:length + 1, :], room[1][..., length:length + 1, :] = keys_B_K_1_d, values_B_K_1_d
    layer.keys, layer.values = room[0][..., :length + 1, :], room[1][..., :length + 1, :]
    return layer.keys, layer.values


def _rotated(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary positions as Llama applies them (the halves of each head rotated)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


@contextmanager
def fast_steps(causal_lm: nn.Module):
    """While inside, the model's one-token steps with a KV cache run as a LlamaStep (if `describes` it; else
    nothing changes); everything else goes to transformers' forward as before."""
    if not describes(causal_lm):
        yield
        return
    step, forward = LlamaStep(causal_lm), causal_lm.forward

    def stepping(input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, **kwargs):
        if (input_ids is None or input_ids.shape[1] != 1 or past_key_values is None or attention_mask is None
                or position_ids is None or set(kwargs) - {"use_cache"} or kwargs.get("use_cache") is False):
            return forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                           past_key_values=past_key_values, **kwargs)
        return step(input_ids, attention_mask, position_ids, past_key_values)

    causal_lm.forward = stepping
    try:
        yield
    finally:
        del causal_lm.forward
