"""The generation timeout: a reply that takes too long ends with a clear error, and the server goes on."""

from __future__ import annotations

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
