"""bfloat16 where the hardware has it (models.bf16): the rollout sampler, the RL update under autocast, the fallback."""

import threading

import pytest
import torch
from torch import nn

from apiary.learners.grpo import GRPOConfig, GRPOLearner, masked_logprobs
from apiary.models import adapters, bf16, bf16_linear, quantized
from apiary.models.core import load_core
from apiary.models.generate import SamplingParams, generate, sample
from apiary.models.logprobs import project
from apiary.models.prompt_format import prompt_ids
from test_quantized_sampler import against_float32, first_sample_wins, first_token_job, prompts_of, worker  # noqa: F401 - the fixture


@pytest.fixture
def native(monkeypatch):
    """Behave as on a CPU with native bfloat16 (the classes run anywhere; only slower where it is emulated)."""
    monkeypatch.setattr(bf16, "native_bf16", lambda device: True)


@pytest.mark.parametrize("flags, expected", [("fpu sse2 avx512f avx512_bf16 avx512_vnni", True),
                                             ("fpu sse2 amx_bf16 amx_tile", True),
                                             ("fpu sse2 avx2 avx512f avx512bw", False)])
def test_native_bf16_reads_the_cpus_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n")
    assert bf16.native_bf16(torch.device("cpu"), cpuinfo) is expected
    assert bf16.native_bf16(torch.device("cpu"), tmp_path / "missing") is False


def test_the_bf16_sampler_agrees_with_float32_and_puts_the_model_back(tiny_core, worker):
    """Tolerance: the first 4 greedy tokens equal on at least 6 of the 8 prompts (the random tiny core's
    logits are nearly flat, so a tie may flip); afterwards the model is exactly the float32 one again."""
    prompts, pad = prompts_of(tiny_core.tokenizer), tiny_core.tokenizer.pad_token_id
    greedy = SamplingParams(max_new_tokens=4, temperature=0.0)
    head = worker.get_output_embeddings()
    with adapters.merged(worker):
        reference = generate(worker, prompts, 1, greedy, [], pad)
    with torch.no_grad():  # after the merge and unmerge, which round the weights a little
        before = worker(input_ids=torch.tensor([prompts[0]])).logits
    with bf16.BF16Sampler(worker).sampling() as model:
        assert isinstance(model.get_output_embeddings(), bf16.BF16Linear)
        fast = generate(model, prompts, 1, greedy, [], pad)
        samples = sample(model, prompts, 1, SamplingParams(max_new_tokens=4), [], pad, torch.Generator().manual_seed(0))
    assert sum(a == b for a, b in zip(reference, fast)) >= 6, (reference, fast)
    assert all(len(s.logprobs) == len(s.tokens) and all(lp <= 0 for lp in s.logprobs) for s in samples)
    assert worker.get_output_embeddings() is head
    with torch.no_grad():
        assert torch.equal(worker(input_ids=torch.tensor([prompts[0]])).logits, before)


def test_the_output_projection_stays_float32_under_autocast(tiny_core, worker):
    hidden_N_H = torch.randn(3, worker.get_output_embeddings().in_features)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        projected = project(worker, hidden_N_H)
        plain = worker.get_output_embeddings()(hidden_N_H)
    assert projected.dtype == torch.float32 and plain.dtype == torch.bfloat16
    with torch.no_grad():
        assert torch.equal(projected, worker.get_output_embeddings()(hidden_N_H))


def test_log_probs_under_the_bf16_update_are_rounded_not_changed(tiny_core, worker):
    """The RL update's log-probs under bfloat16 autocast: within 0.05 of float32's on every token (the tiny
    core), and not equal to them (the products really ran in bfloat16)."""
    job = first_token_job("x")
    learner = GRPOLearner(worker, tiny_core.tokenizer, job, GRPOConfig(prompts_per_step=2, samples_per_prompt=4),
                          tiny_core.stop_token_ids)
    transcripts, pad = learner.rollout(job.source.train(0, 2)), tiny_core.tokenizer.pad_token_id
    with torch.no_grad():
        plain_C_L, mask_C_L = masked_logprobs(worker, transcripts, pad)
        with bf16.update_autocast(worker.device, True):
            rounded_C_L, _ = masked_logprobs(worker, transcripts, pad)
    assert rounded_C_L.dtype == torch.float32 and mask_C_L.sum() > 0
    assert float((rounded_C_L - plain_C_L).abs().max()) < 0.05
    assert not torch.equal(rounded_C_L, plain_C_L)


def test_an_rl_step_in_bf16_reports_the_gap_and_trains_the_lora_in_float32(tiny_core, worker, native):
    job = first_token_job("x")
    config = GRPOConfig(prompts_per_step=2, samples_per_prompt=4, learning_rate=5e-2, sampler="bf16", update_precision="bf16")
    learner = GRPOLearner(worker, tiny_core.tokenizer, job, config, tiny_core.stop_token_ids)
    assert learner.fast is not None and learner.autocast
    first_sample_wins(learner, job.source.train(0, 2))
    lora_before = {n: p.detach().clone() for n, p in worker.named_parameters() if p.requires_grad}
    _, stats = learner.step(job.source.train(0, 2))
    assert 0 <= stats.extra["sampler_kl"] < 0.05 and 0 <= stats.extra["is_capped"] <= 1
    assert all(p.dtype == torch.float32 for p in worker.parameters())
    assert any(not torch.equal(p, lora_before[n]) for n, p in worker.named_parameters() if p.requires_grad)


def test_without_native_bf16_the_learner_falls_back_to_float32_with_a_message(tiny_core, worker, monkeypatch):
    monkeypatch.setattr(bf16, "native_bf16", lambda device: False)
    with pytest.warns(RuntimeWarning, match="sampling in bfloat16 is not available.*Using float32 instead"):
        learner = GRPOLearner(worker, tiny_core.tokenizer, first_token_job("x"),
                              GRPOConfig(sampler="bf16", update_precision="bf16"), tiny_core.stop_token_ids)
    assert learner.fast is None and learner.autocast is False
    assert len(learner.rollout(learner.job.source.train(0, 1))) == learner.config.samples_per_prompt


def test_a_bad_precision_is_refused_clearly():
    with pytest.raises(ValueError, match=r"precision must be one of float32, bf16 \(got 'fp8'\)"):
        GRPOConfig(update_precision="fp8")


@pytest.mark.real_model
def test_the_bf16_sampler_agrees_with_float32_on_the_bundled_core():
    """Tolerance: the first greedy token equal on at least 7 of the 8 prompts, all 8 greedy tokens on at least 4,
    and the mean per-token KL(bf16 || float32) on the sampler's own replies under 0.01 (int8's is about 0.006)."""
    reference, fast, kl = against_float32(lambda model, _tokenizer: bf16.BF16Sampler(model))
    assert sum(a[0] == b[0] for a, b in zip(reference, fast)) >= 7, (reference, fast)
    assert sum(a == b for a, b in zip(reference, fast)) >= 4, (reference, fast)
    assert 0 <= kl < 0.01, kl


def test_bf16_linear_gives_float32_for_float32():
    layer = bf16.BF16Linear(torch.randn(4, 3), torch.randn(4))
    x = torch.randn(2, 3)
    out = layer(x)
    assert out.dtype == torch.float32 and torch.allclose(out, nn.functional.linear(x, layer.weight_O_I.float(),
                                                                                      layer.bias_O.float()), atol=0.05)


def test_fewer_rows_than_int8_below_multiply_int8_weights():
    """Below `int8_below` rows: int8 weights, within 2% of float32 and not the bfloat16 product; at or above it,
    exactly the bfloat16 product. A width the int8 kernel cannot read (not a multiple of 16) stays bfloat16."""
    weight_O_I, bias_O = torch.randn(48, 32), torch.randn(48)
    plain, small = bf16.BF16Linear(weight_O_I, bias_O), bf16.BF16Linear(weight_O_I, bias_O, int8_below=4)
    x_N_I = torch.randn(3, 32)
    exact = nn.functional.linear(x_N_I, weight_O_I, bias_O)
    assert not torch.equal(small(x_N_I), plain(x_N_I))
    assert float((small(x_N_I) - exact).norm() / exact.norm()) < 0.02
    wide = torch.randn(2, 4, 32)  # 8 rows
    assert torch.equal(small(wide), plain(wide)) and small(wide).shape == (2, 4, 48)
    assert bf16.BF16Linear(torch.randn(8, 24), None, int8_below=4).int8_below == 0


@pytest.mark.skipif(not bf16_linear.PACKS, reason="this torch has no oneDNN")
def test_more_rows_multiply_the_packed_weights_as_f_linear_would(monkeypatch):
    """At or above `int8_below` rows the product reads oneDNN's packed layout of the weights, made once: the same
    product as F.linear on the bfloat16 weights (within bfloat16's rounding), at any row count; without oneDNN,
    F.linear itself."""
    weight_O_I, bias_O = torch.randn(80, 64), torch.randn(80)
    layer = bf16.BF16Linear(weight_O_I, bias_O, int8_below=4)
    for rows in (4, 33, 300):
        x_N_I = torch.randn(rows, 64)
        plain = nn.functional.linear(x_N_I.bfloat16(), layer.weight_O_I, layer.bias_O).float()
        torch.testing.assert_close(layer(x_N_I), plain, rtol=1.6e-2, atol=1e-2)
    packed = layer.packed_weights()
    assert layer.packed_weights() is packed and layer.bias_O is not None
    x_N_I = torch.randn(9, 64)
    from_packed = layer(x_N_I)
    monkeypatch.setattr(bf16_linear, "PACKS", False)
    unpacked = bf16.BF16Linear(weight_O_I, bias_O, int8_below=4)
    torch.testing.assert_close(unpacked(x_N_I), from_packed, rtol=1.6e-2, atol=1e-2)
    assert unpacked._packed is None


def test_the_int8_sampler_takes_int8_weights_where_bf16_is_native_and_w8a8_elsewhere(tiny_core, worker, monkeypatch):
    monkeypatch.setattr(bf16, "native_bf16", lambda device: True)
    fast = bf16.int8_sampler(worker, tiny_core.tokenizer)
    assert isinstance(fast, bf16.BF16Sampler) and fast.int8_below == bf16.INT8_BELOW
    monkeypatch.setattr(bf16, "native_bf16", lambda device: False)
    assert isinstance(bf16.int8_sampler(worker, tiny_core.tokenizer), quantized.Int8Sampler)


@pytest.mark.real_model
def test_int8_weights_with_bf16_activations_agree_with_float32_on_the_bundled_core():
    """Each prompt alone (one row: the int8 product). Tolerance: the first greedy token equal on at least 7 of
    the 8 prompts, and the mean per-token KL(sampler || float32) on its own replies under 0.01 (bench.sampler
    measured about 0.004)."""
    reference, fast, kl = against_float32(lambda model, _tokenizer: bf16.BF16Sampler(model, int8_below=bf16.INT8_BELOW),
                                          rows=1, greedy_tokens=4)
    assert sum(a[0] == b[0] for a, b in zip(reference, fast)) >= 7, (reference, fast)
    assert 0 <= kl < 0.01, kl


def test_an_engine_serving_in_bf16_answers_the_core_and_a_worker_near_float32(tiny_core_dir, tmp_path, random_adapter,
                                                                              native):
    """The engine's own core turned to bfloat16 (and in int8 at a few rows): embeddings stay float32, the output
    projection gets a bfloat16 copy of its own, a worker's adapter loads on it in float32, and greedy replies
    mostly match float32's (the tiny random core's near-ties may flip a token: at least 2 of the 3 first tokens
    equal per model)."""
    from apiary.models.decoder import Request
    from apiary.serve.engine import Engine

    random_adapter(tmp_path / "a", seed=1)
    questions, replies = ["What is 2 + 3?", "Name a colour.", "Count to ten."], {}
    for precision in ("float32", "bf16", "int8"):
        core = load_core(tiny_core_dir)
        engine = Engine(max_batch=4, precision=precision)
        try:
            engine.deploy("core", core)
            engine.deploy("worker:a", core, tmp_path / "a", 1)
            requests = {(m, q): Request(prompt=prompt_ids(core.tokenizer, [{"role": "user", "content": q}]),
                                        max_new_tokens=4, temperature=0.0, stop_ids=())
                        for m in ("core", "worker:a") for q in questions}
            done = threading.Semaphore(0)
            for (model, _), request in requests.items():
                request.on_done = lambda _r: done.release()
                engine.submit(model, request)
            for _ in requests:
                assert done.acquire(timeout=60)
        finally:
            engine.stop()
        replies[precision] = {key: r.tokens for key, r in requests.items()}
        if precision != "float32":
            inner = core.model.get_base_model() if hasattr(core.model, "get_base_model") else core.model
            assert inner.get_input_embeddings().weight.dtype == torch.float32
            assert inner.get_output_embeddings().weight.dtype == torch.bfloat16
            assert all(p.dtype == torch.float32 for n, p in inner.named_parameters() if "lora_" in n)
            twins = [m.forward.__self__ for m in inner.modules() if isinstance(m, nn.Linear) and m.weight.dtype == torch.bfloat16]
            assert twins and all(isinstance(t, bf16.BF16Linear) for t in twins)
            assert all((t._int8 is not None) == (precision == "int8") for t in twins)  # int8 made at the few-row steps
    for precision in ("bf16", "int8"):
        for m in ("core", "worker:a"):
            assert sum(replies[precision][(m, q)][0] == replies["float32"][(m, q)][0] for q in questions) >= 2, replies
        assert replies[precision][("core", questions[0])] != replies[precision][("worker:a", questions[0])]


def test_a_bad_serving_precision_is_refused_clearly():
    from apiary.serve.service import ServeConfig

    with pytest.raises(ValueError, match=r"precision must be one of float32, bf16, int8 \(got 'half'\)"):
        ServeConfig(precision="half")
