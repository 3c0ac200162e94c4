"""The generation timeout: a reply that takes too long ends with a clear error, and the server goes on."""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest
from typer.testing import CliRunner

from apiary import Hive
from apiary.cli import app
from apiary.models.decoder import RunningBatch
from apiary.serve.app import ServerThread, create_app
from apiary.serve.service import ServeConfig, Service
from apiary.serve.tenants import Tenants

STEP_SECONDS = 0.1  # every decoding step is made this slow, so 64 tokens take 6.4 s whatever the machine


@pytest.fixture
def slow_server(tmp_path, tiny_core_dir, monkeypatch):
    step = RunningBatch.step

    def slow_step(self):
        time.sleep(STEP_SECONDS)
        step(self)

    monkeypatch.setattr(RunningBatch, "step", slow_step)
    Hive(tmp_path / "hive", core=str(tiny_core_dir))
    config = ServeConfig(learn=False, max_tokens=64, generation_timeout=1.0)
    with ServerThread(create_app(Service(tmp_path / "hive", core=str(tiny_core_dir), config=config), Tenants())) as server:
        yield server


def test_a_reply_past_the_generation_timeout_gets_504_in_openais_shape_and_the_server_goes_on(slow_server):
    chat = {"model": "core", "messages": [{"role": "user", "content": "count to a hundred"}], "temperature": 0}
    started = time.monotonic()
    answer = httpx.post(slow_server.url + "/v1/chat/completions", json=chat | {"max_tokens": 64}, timeout=30)
    assert answer.status_code == 504, answer.text
    error = answer.json()["error"]
    assert error["type"] == "timeout" and "--generation-timeout" in error["message"] and "1 s" in error["message"]
    assert time.monotonic() - started < 6.4  # cut off, not written to the end
    c = openai.OpenAI(base_url=slow_server.url + "/v1", api_key="local", max_retries=0)
    with pytest.raises(openai.APIError, match="generation timeout"):  # streamed: an error event, then the end
        list(c.chat.completions.create(**chat, max_tokens=64, stream=True))
    reply = c.chat.completions.create(**chat, max_tokens=1)  # a short reply still gets through
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_a_generation_timeout_that_is_not_a_positive_number_is_refused():
    for bad in (0, -1.0, float("inf"), "10"):
        with pytest.raises(ValueError, match="generation timeout"):
            ServeConfig(generation_timeout=bad)
    result = CliRunner().invoke(app, ["serve", "--generation-timeout", "0"])
    assert result.exit_code == 2 and "generation timeout" in result.output and "Traceback" not in result.output


def test_a_body_that_never_finishes_gets_408_nothing_is_written_and_the_server_goes_on(tmp_path, tiny_core_dir):
    hive = Hive(tmp_path / "hive", core=str(tiny_core_dir))
    hive.deploy("rg:chain_sum", "arith", overrides=["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"])
    config = ServeConfig(learn=False, max_tokens=8, body_timeout=0.5)
    with ServerThread(create_app(Service(hive.path, core=str(tiny_core_dir), config=config), Tenants())) as server:
        reply = httpx.post(server.url + "/v1/chat/completions", timeout=30,
                           json={"model": "worker:arith", "messages": [{"role": "user", "content": "1 + 2"}], "max_tokens": 1})
        body = json.dumps({"id": reply.json()["id"], "reward": 1.0}).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:  # half a body, then silence
            raw.sendall(b"POST /v1/feedback HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body) + body[:len(body) // 2])
            started, answer = time.monotonic(), b""
            while chunk := raw.recv(65536):  # the server answers and closes the connection
                answer += chunk
        assert 0.4 < time.monotonic() - started < 10
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer
        error = json.loads(payload)["error"]
        assert error["code"] == 408 and error["type"] == "timeout" and "--body-timeout" in error["message"]
        assert hive.store.feedback() == []  # nothing was written
        whole = httpx.post(server.url + "/v1/feedback", content=body, headers={"Content-Type": "application/json"})
        assert whole.status_code == 200, whole.text  # the next request is served
        assert len(hive.store.feedback()) == 1


def test_a_body_timeout_that_is_not_a_positive_number_is_refused():
    for bad in (0, -1.0, float("inf"), "10"):
        with pytest.raises(ValueError, match="body timeout"):
            ServeConfig(body_timeout=bad)
    result = CliRunner().invoke(app, ["serve", "--body-timeout", "0"])
    assert result.exit_code == 2 and "body timeout" in result.output and "Traceback" not in result.output
