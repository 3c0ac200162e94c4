import pytest
import torch

from apiary.models.core import CoreNotFoundError, load_core
from apiary.models.generate import SamplingParams, generate
from apiary.models.logprobs import completion_logits, completion_logprobs
from apiary.models.prefix import shared_prefix_length


def encode(core, text):
    return list(core.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                   tokenize=True, return_dict=False))


def plain_logprobs(model, prompt, completion):
    with torch.no_grad():
        logp = model(torch.tensor([prompt + completion])).logits.log_softmax(-1)[0]
    return torch.stack([logp[len(prompt) - 1 + j, t] for j, t in enumerate(completion)])


def test_shared_prefix_leaves_every_prompt_a_token():
    assert shared_prefix_length([[1, 2, 3], [1, 2, 4]]) == 2
    assert shared_prefix_length([[1, 2], [1, 2, 3]]) == 1
    assert shared_prefix_length([[5, 6, 7]]) == 2
    assert shared_prefix_length([[1], [2]]) == 0


def test_completion_logprobs_match_plain_forward(tiny_core):
    prompts = [encode(tiny_core, "What is 2 + 2?"), encode(tiny_core, "Name a colour, please, in one word.")]
    completions = [[10, 20, 30], [40], [50, 60, 70, 80, 90]]
    index = [0, 1, 0]
    got, mask = completion_logprobs(tiny_core.model, prompts, completions, index, tiny_core.tokenizer.pad_token_id)
    assert mask.sum(1).tolist() == [3, 1, 5]
    for row, (completion, p) in enumerate(zip(completions, index)):
        want = plain_logprobs(tiny_core.model, prompts[p], completion)
        torch.testing.assert_close(got[row, : len(completion)], want, atol=1e-4, rtol=1e-4)
    assert torch.all(got[mask == 0] == 0)


def test_completion_logits_match_plain_forward_token_by_token(tiny_core):
    prompts = [encode(tiny_core, "What is 2 + 2?"), encode(tiny_core, "Name a colour, please, in one word.")]
    completions = [[10, 20, 30], [40], [50, 60, 70, 80, 90]]
    index = [0, 1, 0]
    got = completion_logits(tiny_core.model, prompts, completions, index, tiny_core.tokenizer.pad_token_id)
    want = []
    with torch.no_grad():
        for completion, p in zip(completions, index):
            logits = tiny_core.model(torch.tensor([prompts[p] + completion])).logits[0]
            want.append(logits[len(prompts[p]) - 1:len(prompts[p]) + len(completion) - 1])
    torch.testing.assert_close(got, torch.cat(want), atol=1e-4, rtol=1e-4)
    one_token = completion_logits(tiny_core.model, prompts, [[40]], [1], tiny_core.tokenizer.pad_token_id)
    torch.testing.assert_close(one_token, want[1], atol=1e-4, rtol=1e-4)


def test_greedy_generation_matches_transformers(tiny_core):
    tok = tiny_core.tokenizer
    prompts = [encode(tiny_core, "Hello there"), encode(tiny_core, "What is the capital of France? Answer briefly.")]
    ours = generate(tiny_core.model, prompts, 1, SamplingParams(max_new_tokens=6, temperature=0), tiny_core.stop_token_ids,
                    tok.pad_token_id)
    for prompt, completion in zip(prompts, ours):
        with torch.no_grad():
            ref = tiny_core.model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                                           eos_token_id=tiny_core.stop_token_ids, pad_token_id=tok.pad_token_id)
        assert completion == ref[0, len(prompt):].tolist()


def test_sampling_shapes_and_stop_tokens(tiny_core):
    prompts = [encode(tiny_core, "a"), encode(tiny_core, "bb")]
    stop = tiny_core.stop_token_ids
    out = generate(tiny_core.model, prompts, 3, SamplingParams(max_new_tokens=5, temperature=1.0), stop,
                   tiny_core.tokenizer.pad_token_id, torch.Generator().manual_seed(0))
    assert len(out) == 6
    for completion in out:
        assert 1 <= len(completion) <= 5
        assert all(t not in stop for t in completion[:-1])


def test_missing_or_unsupported_core_paths(tmp_path):
    with pytest.raises(CoreNotFoundError, match="does not exist"):
        load_core(tmp_path / "nope")
    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"x")
    with pytest.raises(CoreNotFoundError, match="unsupported"):
        load_core(bad)
    with pytest.raises(CoreNotFoundError, match="no config.json"):
        load_core(tmp_path)


@pytest.mark.real_model
def test_bundled_core_loads_and_answers():
    core = load_core()
    assert core.model.config.num_hidden_layers == 30
    prompt = encode(core, "What is 2 + 3? Answer with only the number.")
    out = generate(core.model, [prompt], 1, SamplingParams(max_new_tokens=8, temperature=0), core.stop_token_ids,
                   core.tokenizer.pad_token_id)
    text = core.tokenizer.decode(out[0], skip_special_tokens=True)
    assert "5" in text
    got, _ = completion_logprobs(core.model, [prompt], out, [0], core.tokenizer.pad_token_id)
    torch.testing.assert_close(got[0, : len(out[0])], plain_logprobs(core.model, prompt, out[0]), atol=1e-3, rtol=1e-3)


def test_merged_adapter_samples_like_the_unmerged_one_and_restores_weights(tiny_core):
    from apiary.models import adapters
    from apiary.models.adapters import LoraSpec

    model = adapters.attach(tiny_core.model, LoraSpec(rank=4, alpha=8))
    try:
        for name, param in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.5)  # a non-trivial adapter
        base = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
        prompts = [encode(tiny_core, "one"), encode(tiny_core, "two three")]
        params = SamplingParams(max_new_tokens=5, temperature=0)
        pad = tiny_core.tokenizer.pad_token_id
        plain = generate(model, prompts, 1, params, tiny_core.stop_token_ids, pad)
        with adapters.merged(model):
            fused = generate(model, prompts, 1, params, tiny_core.stop_token_ids, pad)
        assert fused == plain
        for name, param in model.named_parameters():
            if name in base:
                torch.testing.assert_close(param, base[name], atol=1e-6, rtol=0)
    finally:
        adapters.detach(model)


def test_generation_stops_rows_that_are_done(tiny_core):
    prompts = [encode(tiny_core, "a"), encode(tiny_core, "b")]
    out = generate(tiny_core.model, prompts, 2, SamplingParams(max_new_tokens=6, temperature=1.0), [-1],
                   tiny_core.tokenizer.pad_token_id, torch.Generator().manual_seed(0), done=lambda ids: len(ids) >= 2)
    assert [len(c) for c in out] == [2, 2, 2, 2]


def test_sampling_with_the_same_generator_gives_the_same_completions(tiny_core):
    prompts = [encode(tiny_core, "a"), encode(tiny_core, "a"), encode(tiny_core, "bb")]  # a repeated prompt is read once
    params = SamplingParams(max_new_tokens=8, temperature=1.0, top_p=0.9)

    def sample(seed):
        return generate(tiny_core.model, prompts, 4, params, tiny_core.stop_token_ids, tiny_core.tokenizer.pad_token_id,
                        torch.Generator().manual_seed(seed))

    first = sample(0)
    assert len(first) == 12 and sample(0) == first and sample(1) != first


def test_generation_runs_the_model_with_its_active_adapter(tiny_core, tmp_path, random_adapter):
    from apiary.models import adapters
    from apiary.models.adapters import LoraSpec

    random_adapter(tmp_path / "a", seed=3)
    prompts = [encode(tiny_core, "Hello there"), encode(tiny_core, "Name a colour.")]
    params = SamplingParams(max_new_tokens=6, temperature=0)
    core_only = generate(tiny_core.model, prompts, 1, params, tiny_core.stop_token_ids, tiny_core.tokenizer.pad_token_id)
    model = adapters.attach(tiny_core.model, LoraSpec(), path=tmp_path / "a")
    try:
        with_adapter = generate(model, prompts, 1, params, tiny_core.stop_token_ids, tiny_core.tokenizer.pad_token_id)
        with torch.no_grad():
            reference = [model.generate(torch.tensor([p]), max_new_tokens=6, do_sample=False, eos_token_id=tiny_core.stop_token_ids,
                                        pad_token_id=tiny_core.tokenizer.pad_token_id)[0, len(p):].tolist() for p in prompts]
    finally:
        adapters.detach(model)
    assert with_adapter == reference and with_adapter != core_only
