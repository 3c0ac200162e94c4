"""Chunked prefill: a joining prompt is read a chunk per decoding step, and every reply stays the one it gets alone."""

from __future__ import annotations

import threading

import pytest
import torch
from typer.testing import CliRunner

from apiary.cli import app
from apiary.models.decoder import Request, RunningBatch, decode
from apiary.models.generate import prompt_ids
from apiary.models.prefix import PrefillJob, prefill
from apiary.serve.engine import Engine
from apiary.serve.service import ServeConfig

QUESTIONS = ["Hi", "What is 2 + 3?", "Name a colour. " * 6, "Write a long poem about the sea and the sky, please. " * 8]


def ids(core, question: str) -> list[int]:
    return prompt_ids(core.tokenizer, [{"role": "user", "content": question}])


def request(prompt: list[int], max_new: int, **kw) -> Request:
    return Request(prompt=prompt, max_new_tokens=max_new, temperature=0.0, **kw)


def alone(core, prompt: list[int], max_new: int) -> list[int]:
    """The greedy reply to one prompt with nothing else running (the prompt read whole)."""
    solo = request(prompt, max_new)
    with torch.inference_mode():
        decode(core.model, [solo], core.tokenizer.pad_token_id)
    return solo.tokens


@pytest.mark.parametrize("budget", [1, 5, 16, 10_000])
def test_prompts_read_in_chunks_give_the_state_of_one_pass(tiny_core, budget):
    shared = ids(tiny_core, "What is 2 + 3?") + [100, 101]
    for prompts in ([shared + [5, 6, 7], shared[:-1] + [9], shared + list(range(200, 230))],  # a shared prefix
                    [list(range(300, 340)), [7, 8], list(range(400, 409))]):  # none: pads see no key
        want = prefill(tiny_core.model, prompts, tiny_core.tokenizer.pad_token_id)
        job, got, forwards = PrefillJob(prompts, tiny_core.tokenizer.pad_token_id, tiny_core.model.device), None, 0
        with torch.inference_mode():
            while got is None:
                got, forwards = job.advance(tiny_core.model, budget), forwards + 1
        torch.testing.assert_close(got.last_logits_P_V, want.last_logits_P_V, atol=1e-5, rtol=1e-5)
        assert torch.equal(got.attention_mask_P_T, want.attention_mask_P_T)
        assert torch.equal(got.next_position_P, want.next_position_P)
        for a, b in zip(got.cache.layers, want.cache.layers):
            mask = want.attention_mask_P_T.bool()  # the pads' keys are never read
            torch.testing.assert_close(a.keys.transpose(1, 2)[mask], b.keys.transpose(1, 2)[mask], atol=1e-5, rtol=1e-5)
        assert (forwards > 1) if budget < 40 else (forwards <= 2)


@pytest.mark.parametrize("chunk", [0, 4, 16, 1000])
def test_chunked_prefill_gives_each_request_its_solo_greedy_reply_while_others_join_mid_reply(tiny_core, chunk):
    plan = [(ids(tiny_core, q), 6 + 3 * i) for i, q in enumerate(QUESTIONS)] * 2  # short and long prompts, twice
    batch = RunningBatch(tiny_core.model, tiny_core.tokenizer.pad_token_id, None, prefill_chunk=chunk)
    requests = []
    with torch.inference_mode():
        while len(requests) < len(plan) or len(batch):
            if len(requests) < len(plan) and (not requests or len(requests[-1].tokens) >= 2):  # the last one is mid-reply
                requests.append(request(*plan[len(requests)]))
                batch.admit([requests[-1]])
            batch.step()
    for r, (prompt, max_new) in zip(requests, plan):
        assert r.tokens == alone(tiny_core, prompt, max_new) and r.finish_reason == "length"


@pytest.mark.parametrize("chunk", [0, 16])
def test_running_rows_get_a_token_between_the_chunks_of_a_joining_prompt(tiny_core, chunk):
    first, long = ids(tiny_core, QUESTIONS[2]), ids(tiny_core, QUESTIONS[3])
    events, inputs = [], []
    hook = tiny_core.model.register_forward_pre_hook(lambda _m, _a, kw: inputs.append(tuple(kw["input_ids"].shape)),
                                                     with_kwargs=True)
    batch = RunningBatch(tiny_core.model, tiny_core.tokenizer.pad_token_id, None, prefill_chunk=chunk)
    running = request(first, 60, on_token=lambda _t: events.append("running"))
    joining = request(long, 5, on_token=lambda _t: events.append("joining"))
    try:
        with torch.inference_mode():
            batch.admit([running])
            batch.step()
            batch.admit([joining])
            while joining.finish_reason is None:
                batch.step()
    finally:
        hook.remove()
    if chunk == 0:  # the long prompt read in one forward while the running row waits
        assert inputs[:4] == [(1, len(first)), (1, 1), (1, len(long)), (2, 1)]
        assert events[:3] == ["running", "running", "joining"]
    else:  # one running token, one chunk, ...
        chunks = -(-len(long) // chunk)
        last = len(long) - chunk * (chunks - 1)
        assert inputs[0] == (1, len(first))  # nothing was running: read whole
        assert inputs[1:2 + 2 * chunks] == [(1, 1), (1, chunk)] * (chunks - 1) + [(1, 1), (1, last), (2, 1)]
        assert events[:chunks + 2] == ["running"] * (chunks + 1) + ["joining"]
    assert joining.tokens == alone(tiny_core, long, 5) and running.tokens == alone(tiny_core, first, len(running.tokens))


def test_the_engine_streams_running_replies_while_a_long_prompt_joins_in_chunks(tiny_core):
    engine, events, done = Engine(max_batch=4, prefill_chunk=8), [], threading.Semaphore(0)
    try:
        engine.deploy("core", tiny_core)
        long = request(ids(tiny_core, QUESTIONS[3]), 4, on_token=lambda _t: events.append("long"),
                       on_done=lambda _r: done.release())
        first = request(ids(tiny_core, QUESTIONS[1]), 40, on_done=lambda _r: done.release(),
                        on_token=lambda _t: (events.append("first"), len(first.tokens) == 2 and engine.submit("core", long)))
        engine.submit("core", first)
        assert done.acquire(timeout=60) and done.acquire(timeout=60)
    finally:
        engine.stop()
    assert events.index("long") >= 2 + -(-len(long.prompt) // 8)  # a token of the running reply per chunk read
    assert long.tokens == alone(tiny_core, long.prompt, 4) and first.tokens == alone(tiny_core, first.prompt, 40)


def test_joining_requests_are_told_when_the_batch_fails(tiny_core):
    told = []
    batch = RunningBatch(tiny_core.model, tiny_core.tokenizer.pad_token_id, None, prefill_chunk=4)
    with torch.inference_mode():
        batch.admit([request(ids(tiny_core, "Hi"), 20, on_done=told.append)])
        batch.step()
        batch.admit([request(ids(tiny_core, QUESTIONS[3]), 5, on_done=told.append)])
        batch.step()
    assert len(batch) == 2 and len(batch.rows) == 1
    batch.fail("error")
    assert [r.finish_reason for r in told] == ["error", "error"] and len(batch) == 0


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_a_prefill_chunk_that_is_not_a_whole_number_of_tokens_is_refused(tiny_core, bad):
    with pytest.raises(ValueError, match="prefill chunk"):
        RunningBatch(tiny_core.model, 0, None, prefill_chunk=bad)
    with pytest.raises(ValueError, match="prefill chunk"):
        Engine(max_batch=2, prefill_chunk=bad)
    with pytest.raises(ValueError, match="prefill chunk"):
        ServeConfig(prefill_chunk=bad)
    assert ServeConfig().prefill_chunk == 64 and ServeConfig(prefill_chunk=0).prefill_chunk == 0


def test_serve_refuses_a_negative_prefill_chunk_with_a_clear_message():
    result = CliRunner().invoke(app, ["serve", "--prefill-chunk", "-1"])
    assert result.exit_code == 2 and "prefill chunk" in result.output and "Traceback" not in result.output


def test_the_serving_benchmark_measures_streamed_replies_with_their_longest_pause(tmp_path, tiny_core_dir, monkeypatch):
    from apiary import Hive
    from apiary.bench.serve_load import load
    from apiary.serve.app import ServerThread, create_app
    from apiary.serve.service import Service
    from apiary.serve.tenants import Tenants

    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    Hive(tmp_path / "hive", core=str(tiny_core_dir))
    service = Service(tmp_path / "hive", core=str(tiny_core_dir), config=ServeConfig(learn=False, prefill_chunk=8))
    with ServerThread(create_app(service, Tenants())) as server:
        figure = load(server.url, 3, 2, QUESTIONS, 12, stagger_s=0.05, stream=True)
    service.close()
    assert figure["requests"] == 6 and figure["errors"] == 0 and figure["completion_tokens"] > 0
    assert 0 < figure["p95_longest_pause_s"] <= figure["max_pause_s"] <= figure["p95_s"]


def test_a_joining_request_cancelled_before_its_prompt_is_read_ends_without_reading_the_rest(tiny_core):
    told, inputs = [], []
    hook = tiny_core.model.register_forward_pre_hook(lambda _m, _a, kw: inputs.append(tuple(kw["input_ids"].shape)),
                                                     with_kwargs=True)
    batch = RunningBatch(tiny_core.model, tiny_core.tokenizer.pad_token_id, None, prefill_chunk=4)
    running = request(ids(tiny_core, "Hi"), 20)
    joining = request(ids(tiny_core, QUESTIONS[3]), 5, on_done=told.append)
    try:
        with torch.inference_mode():
            batch.admit([running])
            batch.step()
            batch.admit([joining])
            batch.step()
            joining.cancelled = True
            batch.step()
    finally:
        hook.remove()
    assert told == [joining] and joining.finish_reason == "cancelled" and joining.tokens == []
    assert len(batch) == 1 and inputs[1:] == [(1, 1), (1, 4), (1, 1)]  # one chunk read, then only the running row
