"""Teacher-forced log-probabilities of completions, reading each prompt only once; and the
per-token reverse KL that on-policy distillation minimises.

`completion_logprobs` is used by every learner: completions that share a prompt share its (differentiable) KV cache,
and the prefix common to all prompts is run once. The vocabulary projection runs only on real
(unpadded) positions, since on a CPU it and its softmax cost as much as the rest of the model.
Tests check the result against the plain forward over each full prompt+completion sequence.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from apiary.models.prefix import prefill


def _token_logprobs(logits_N_V: torch.Tensor, tokens_N: torch.Tensor) -> torch.Tensor:
    logits_N_V = logits_N_V.float()
    return logits_N_V.gather(-1, tokens_N[:, None]).squeeze(-1) - torch.logsumexp(logits_N_V, dim=-1)


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
    first_C = _token_logprobs(state.last_logits_P_V, tokens_C_L[:, 0])  # token 0 is predicted by the prompt
    columns = [first_C[:, None]]
    if width > 1:
        hidden_C_L_H = model.get_decoder()(
            input_ids=tokens_C_L[:, :-1],
            attention_mask=torch.cat([state.attention_mask_P_T, mask_C_L[:, :-1]], dim=1),
            position_ids=state.next_position_P[:, None] + torch.arange(width - 1, device=device)[None, :],
            past_key_values=state.cache,
            use_cache=True,
        ).last_hidden_state
        real = mask_C_L[:, 1:].bool()  # positions whose *next* token is real (and needed)
        if needed is not None:
            wanted_C_L = torch.zeros_like(mask_C_L)
            for row, flags in enumerate(needed):
                wanted_C_L[row, : len(flags)] = torch.tensor(flags, device=device)
            real &= wanted_C_L[:, 1:].bool()
        logits_N_V = model.get_output_embeddings()(hidden_C_L_H[real])
        rest = torch.zeros((n, width - 1), dtype=first_C.dtype, device=device)
        columns.append(rest.masked_scatter(real, _token_logprobs(logits_N_V, tokens_C_L[:, 1:][real])))
    return torch.cat(columns, dim=1) * mask_C_L, mask_C_L


def completion_logits(model, pairs: list[tuple[list[int], list[int]]], pad_id: int) -> torch.Tensor:
    """Logits predicting each completion token (all rows concatenated: N x V), one right-padded forward."""
    width = max(len(p) + len(c) for p, c in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    where = torch.zeros((len(pairs), width), dtype=torch.bool)
    for row, (prompt, completion) in enumerate(pairs):
        ids[row, :len(prompt) + len(completion)] = torch.tensor(prompt + completion)
        mask[row, :len(prompt) + len(completion)] = 1
        where[row, len(prompt) - 1:len(prompt) + len(completion) - 1] = True  # positions that predict the completion
    hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    return model.get_output_embeddings()(hidden[where])


def reverse_kl(student_N_V: torch.Tensor, teacher_N_V: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(student || teacher) = sum_v p_s(v) (log p_s(v) - log p_t(v))."""
    log_s = torch.log_softmax(student_N_V.float(), dim=-1)
    log_t = torch.log_softmax(teacher_N_V.float(), dim=-1)
    return (log_s.exp() * (log_s - log_t)).sum(-1).mean()
