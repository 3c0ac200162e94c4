"""The serving engine: continuous batching gives every request exactly the reply it would get alone."""

from __future__ import annotations

import threading

import pytest

from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.core import load_core
from apiary.models.generate import SamplingParams, generate, prompt_ids
from apiary.models.decoder import Request
from apiary.serve.engine import Engine

QUESTIONS = ["What is 2 + 3?", "Name a colour.", "Write a long poem about the sea and the sky, please.", "Hi",
             "Count to ten.", "Why?"]


def alone(core_dir, adapter_dir, question: str, max_new_tokens: int) -> list[int]:
    """The greedy reply of the core (plus an adapter) to one question, with nothing else running."""
    core = load_core(core_dir)
    model = adapters.attach(core.model, LoraSpec(), path=adapter_dir) if adapter_dir else core.model
    ids = prompt_ids(core.tokenizer, [{"role": "user", "content": question}])
    return generate(model, [ids], 1, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0), core.stop_token_ids,
                    core.tokenizer.pad_token_id)[0]


@pytest.mark.parametrize("prefill_chunk", [0, 8])  # 8: the prompts join a chunk per step, under their adapters
def test_rows_joining_and_leaving_a_mixed_adapter_batch_get_their_solo_replies(tiny_core_dir, tmp_path, random_adapter,
                                                                                prefill_chunk):
    random_adapter(tmp_path / "a", seed=1)
    random_adapter(tmp_path / "b", seed=2)
    core = load_core(tiny_core_dir)
    engine = Engine(max_batch=4, prefill_chunk=prefill_chunk)  # 6 requests: some wait for a free row
    try:
        engine.deploy("core", core)
        engine.deploy("worker:a", core, tmp_path / "a", 1)
        engine.deploy("worker:b", core, tmp_path / "b", 1)
        plan = [(q, ["core", "worker:a", "worker:b"][i % 3], 5 + 4 * i) for i, q in enumerate(QUESTIONS)]
        requests, all_done = [], threading.Semaphore(0)

        def submit(i: int) -> None:
            """Request i goes in; request i+1 joins when request i has written its second token."""
            question, model, max_new = plan[i]
            request = Request(prompt=prompt_ids(core.tokenizer, [{"role": "user", "content": question}]),
                              max_new_tokens=max_new, temperature=0.0, stop_ids=tuple(core.stop_token_ids),
                              on_done=lambda _r: all_done.release(),
                              on_token=lambda _t: submit(i + 1) if len(requests[i].tokens) == 2 and i + 1 < len(plan) else None)
            requests.append(request)
            engine.submit(model, request)

        submit(0)
        for _ in plan:
            assert all_done.acquire(timeout=60)
        results = dict(enumerate(requests))
    finally:
        engine.stop()
    for i, (question, model, max_new) in enumerate(plan):
        adapter_dir = None if model == "core" else tmp_path / model.split(":")[1]
        assert results[i].tokens == alone(tiny_core_dir, adapter_dir, question, max_new), (model, question)
        assert results[i].finish_reason in ("stop", "length")
    assert len({tuple(results[i].tokens) for i in range(3)}) == 3  # the three models really differ
    assert all(len(results[i].tokens) >= 2 for i in range(len(plan) - 1))  # so each next one joined mid-reply


def test_a_cancelled_request_ends_and_the_engine_goes_on(tiny_core_dir):
    core = load_core(tiny_core_dir)
    engine = Engine(max_batch=2)
    try:
        engine.deploy("core", core)
        ids = prompt_ids(core.tokenizer, [{"role": "user", "content": "Hi"}])
        done = [threading.Event(), threading.Event()]
        first = Request(prompt=ids, max_new_tokens=200, temperature=1.0, on_done=lambda _r: done[0].set(),
                        on_token=lambda _t: setattr(first, "cancelled", True))
        engine.submit("core", first)
        second = Request(prompt=ids, max_new_tokens=3, temperature=0.0, on_done=lambda _r: done[1].set())
        engine.submit("core", second)
        assert done[0].wait(30) and done[1].wait(30)
    finally:
        engine.stop()
    assert first.finish_reason == "cancelled" and len(first.tokens) == 1
    assert second.finish_reason == "length" and len(second.tokens) == 3
