"""Teacher-forced log-probabilities (or whole next-token logits) of completions, reading each prompt only once.

Used by every learner, by distillation and by the retention KL: completions that share a prompt share its (differentiable) KV cache,
and the prefix common to all prompts is run once. The vocabulary projection runs only on real
(unpadded) positions, since on a CPU it and its softmax cost as much as the rest of the model.
Tests check the result against the plain forward over each full prompt+completion sequence.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from apiary.models.prefix import prefill


def token_logprobs(logits_N_V: torch.Tensor, tokens_N: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] per row, in float32 (the decoder records the same of what it samples)."""
    logits_N_V = logits_N_V.float()
    return logits_N_V.gather(-1, tokens_N[:, None]).squeeze(-1) - torch.logsumexp(logits_N_V, dim=-1)


def project(model, hidden_N_H: torch.Tensor) -> torch.Tensor:
    """The output projection, in float32 even under bfloat16 autocast (models.bf16): log-probs and KLs of a few
    thousandths are read from these logits, and bfloat16 logits would round them away."""
    with torch.autocast(hidden_N_H.device.type, enabled=False):
        return model.get_output_embeddings()(hidden_N_H.float())


def _read_completions(model, prompts, completions, prompt_index, pad_id):
    """Teacher-force the completions: (prompt state per completion, tokens_C_L, mask_C_L, hidden_C_L_H of
    completion tokens 0..L-2, or None when no completion has a second token)."""
    if any(len(c) == 0 for c in completions):
        raise ValueError("every completion needs at least one token")
    device = model.device
    state = prefill(model, prompts, pad_id).select(torch.tensor(prompt_index, device=device))
    n, width = len(completions), max(len(c) for c in completions)
    tokens_C_L = torch.full((n, width), pad_id, dtype=torch.long, device=device)
    mask_C_L = torch.zeros((n, width), dtype=torch.long, device=device)
    for row, completion in enumerate(completions):
        tokens_C_L[row, : len(completion)] = torch.tensor(completion, device=device)
        mask_C_L[row, : len(completion)] = 1
    if width == 1:
        return state, tokens_C_L, mask_C_L, None
    hidden_C_L_H = model.get_decoder()(
        input_ids=tokens_C_L[:, :-1],
        attention_mask=torch.cat([state.attention_mask_P_T, mask_C_L[:, :-1]], dim=1),
        position_ids=state.next_position_P[:, None] + torch.arange(width - 1, device=device)[None, :],
        past_key_values=state.cache,
        use_cache=True,
    ).last_hidden_state
    return state, tokens_C_L, mask_C_L, hidden_C_L_H


def completion_logprobs(
    model: PreTrainedModel,
    prompts: list[list[int]],
    completions: list[list[int]],
    prompt_index: list[int],
    pad_id: int,
    needed: list[list[int]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of every completion token under `model`.

    completions[c] continues prompts[prompt_index[c]]. Returns (logprobs_C_L, mask_C_L), where
    completions are right-padded to the longest one and mask_C_L is 1 on real tokens.
    `needed[c]` (0/1 per token), if given, names the tokens whose log-prob the caller uses (a
    multi-turn episode's own replies); the others come back as 0 and cost no vocabulary projection.
    Runs with whatever grad mode the caller chose.
    """
    state, tokens_C_L, mask_C_L, hidden_C_L_H = _read_completions(model, prompts, completions, prompt_index, pad_id)
    first_C = token_logprobs(state.last_logits_P_V, tokens_C_L[:, 0])  # token 0 is predicted by the prompt
    columns = [first_C[:, None]]
    if hidden_C_L_H is not None:
        real = mask_C_L[:, 1:].bool()  # positions whose *next* token is real (and needed)
        if needed is not None:
            wanted_C_L = torch.zeros_like(mask_C_L)
            for row, flags in enumerate(needed):
                wanted_C_L[row, : len(flags)] = torch.tensor(flags, device=mask_C_L.device)
            real &= wanted_C_L[:, 1:].bool()
        logits_N_V = project(model, hidden_C_L_H[real])
        rest = torch.zeros((len(completions), tokens_C_L.shape[1] - 1), dtype=first_C.dtype, device=first_C.device)
        columns.append(rest.masked_scatter(real, token_logprobs(logits_N_V, tokens_C_L[:, 1:][real])))
    return torch.cat(columns, dim=1) * mask_C_L, mask_C_L


def completion_logits(model: PreTrainedModel, prompts: list[list[int]], completions: list[list[int]],
                      prompt_index: list[int], pad_id: int) -> torch.Tensor:
    """The logits predicting every completion token (N x V, N = all completion tokens, completion by
    completion and in order), reading each prompt once and the prefix common to all prompts once, as
    `completion_logprobs` does. For losses over the whole vocabulary (distillation, retention KL)."""
    state, _, mask_C_L, hidden_C_L_H = _read_completions(model, prompts, completions, prompt_index, pad_id)
    if hidden_C_L_H is None:
        return state.last_logits_P_V
    real = mask_C_L[:, 1:].bool()
    logits_N_V = torch.cat([state.last_logits_P_V, project(model, hidden_C_L_H[real])])
    n = len(completions)
    slot_C_L = torch.zeros_like(mask_C_L)  # where each real token's logits sit in logits_N_V
    slot_C_L[:, 0] = torch.arange(n, device=mask_C_L.device)
    slot_C_L[:, 1:][real] = n + torch.arange(int(real.sum()), device=mask_C_L.device)
    return logits_N_V[slot_C_L[mask_C_L.bool()]]


def pair_logits(model: PreTrainedModel, pairs: list[tuple[list[int], list[int]]], pad_id: int) -> torch.Tensor:
    """`completion_logits` of (prompt, completion) pairs, each distinct prompt read once."""
    prompts: dict[tuple[int, ...], int] = {}
    index = [prompts.setdefault(tuple(p), len(prompts)) for p, _ in pairs]
    return completion_logits(model, [list(p) for p in prompts], [c for _, c in pairs], index, pad_id)
