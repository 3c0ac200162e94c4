"""The server, over real HTTP on localhost, with the official `openai` client and the tiny model."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from apiary import Hive
from apiary.serve.app import ServerThread, check_host, create_app
from apiary.evals.gate import GateConfig
from apiary.hive.feedback_learning import LearningConfig, learn_and_gate, ready_workers
from apiary.serve.limits import RateLimiter
from apiary.serve.service import ServeConfig, Service
from apiary.serve.tenants import Tenants, load_tenants
from apiary.store.records import AdapterVersion, CoreVersion

ONE_DIGIT = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"]
KEYS = {"key-acme": "acme", "key-bravo": "bravo"}


def add_adapter(hive: Hive, random_adapter, worker: str, version: int, seed: int) -> None:
    """Save a random (nonzero) adapter as the worker's next version, as a learning run would."""
    random_adapter(hive.store.adapter_dir(worker, version), seed)
    hive.store.add_adapter_version(AdapterVersion(worker=worker, version=version, parent=version - 1,
                                                  path=str(hive.store.adapter_dir(worker, version)), step=0), [])


@pytest.fixture
def hive(tmp_path, tiny_core_dir, monkeypatch):
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    h = Hive(tmp_path / "hive", core=str(tiny_core_dir))
    h.deploy("rg:chain_sum", "arith", overrides=ONE_DIGIT)
    h.deploy("rg:chain_sum", "acme-sums", tenant="acme", overrides=ONE_DIGIT)
    h.deploy("rg:products", "bravo-times", tenant="bravo", overrides=ONE_DIGIT)
    return h


def serve(hive, tiny_core_dir, tenants=Tenants(), **config):
    config = ServeConfig(**({"learn": False, "watch_seconds": 0.1, "max_tokens": 64} | config))
    service = Service(hive.path, core=str(tiny_core_dir), config=config)
    return ServerThread(create_app(service, tenants, max_body=4096))


def client(server, key="local") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def post(server, path, key="local", headers=None, **kwargs) -> httpx.Response:
    return httpx.post(server.url + path, headers={"Authorization": f"Bearer {key}"} | (headers or {}), **kwargs)


def ask(c, model="core", **kwargs):
    return c.chat.completions.create(model=model, messages=[{"role": "user", "content": "What is 2 + 3?"}],
                                     max_tokens=kwargs.pop("max_tokens", 8), **kwargs)


def test_chat_stream_models_and_feedback_round_trip(hive, tiny_core_dir):
    with serve(hive, tiny_core_dir) as server:
        c = client(server)
        assert {m.id for m in c.models.list()} == {"core", "worker:arith"}
        reply = ask(c, temperature=0)
        episode = hive.store.episode(int(reply.id))
        assert episode.origin == "serve" and episode.score is None and episode.completion == reply.choices[0].message.content
        assert reply.usage.completion_tokens >= 1 and reply.choices[0].finish_reason in ("stop", "length")
        assert reply.model_extra["apiary"] == {"episode_id": int(reply.id), "worker": None, "core_version": 0,
                                               "adapter_version": 0}
        chunks = list(ask(c, temperature=0, stream=True, stream_options={"include_usage": True}))
        streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert streamed == reply.choices[0].message.content  # greedy: the same reply, streamed
        assert len({ch.id for ch in chunks}) == 1 and chunks[-1].usage.completion_tokens == reply.usage.completion_tokens
        worker_reply = ask(c, model="worker:arith")
        assert hive.store.episode(int(worker_reply.id)).worker == "arith"
        answer = post(server, "/v1/feedback", json={"id": worker_reply.id, "correction": "5"})
        assert answer.status_code == 200, answer.text
        (stored,) = hive.store.feedback("arith")
        assert stored.kind == "correction" and stored.text == "5" and stored.episode_id == int(worker_reply.id)
        other = ask(c, model="worker:arith", temperature=1.0)
        assert post(server, "/v1/feedback", json={"id": worker_reply.id, "prefer": int(other.id)}).status_code == 200
        assert post(server, "/v1/feedback", json={"id": other.id, "reward": 0.5}).status_code == 200
        workers = httpx.get(server.url + "/v1/workers").json()["data"]
        assert [w["name"] for w in workers] == ["arith"] and workers[0]["unlearned_feedback"] == 3
        metrics = httpx.get(server.url + "/metrics").text
        assert 'apiary_feedback_total{kind="correction"} 1.0' in metrics and "apiary_completion_tokens_total" in metrics


def test_every_bad_input_gets_the_right_status_and_the_server_keeps_serving(hive, tiny_core_dir):
    with serve(hive, tiny_core_dir) as server:
        c = client(server)
        cases = [
            (dict(content=b"{not json", headers={"content-type": "application/json"}), 400, "malformed JSON"),
            (dict(json={"messages": [{"role": "user", "content": "hi"}]}), 400, "'model'"),
            (dict(json={"model": "core"}), 400, "'messages'"),
            (dict(json={"model": "core", "messages": [{"role": "robot", "content": "hi"}]}), 400, "role"),
            (dict(json={"model": "core", "messages": [{"role": ["user"], "content": "hi"}]}), 400, "role"),  # found by fuzzing
            (dict(json={"model": "worker:nobody", "messages": [{"role": "user", "content": "hi"}]}), 404, "not found"),
            (dict(json={"model": "core", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10 ** 6}), 400,
             "max_tokens"),
            (dict(json={"model": "core", "messages": [{"role": "user", "content": "hi"}], "temperature": -1}), 400,
             "temperature"),
            (dict(json={"model": "core", "messages": [{"role": "user", "content": "hi " * 1500}]}), 413, "larger"),
        ]
        for kwargs, status, words in cases:
            answer = post(server, "/v1/chat/completions", **kwargs)
            assert answer.status_code == status, (kwargs, answer.text)
            assert words in answer.json()["error"]["message"]
        for body, status, words in [({"id": 10 ** 6, "reward": 1.0}, 404, "no response"),
                                    ({"reward": 1.0}, 400, "'id'"),
                                    ({"id": "abc", "reward": 1.0}, 400, "digits")]:
            answer = post(server, "/v1/feedback", json=body)
            assert answer.status_code == status and words in answer.json()["error"]["message"], answer.text
        reply = ask(c)
        for body, words in [({"id": reply.id, "reward": 2.0}, "reward must be"), ({"id": reply.id, "correction": ""}, "empty"),
                            ({"id": reply.id, "reward": 1.0, "critique": "no"}, "exactly one"),
                            ({"id": reply.id, "rating": 5}, "unknown field")]:
            answer = post(server, "/v1/feedback", json=body)
            assert answer.status_code == 400 and words in answer.json()["error"]["message"], answer.text
        assert hive.store.feedback() == []  # nothing refused was written
        with pytest.raises(openai.NotFoundError):
            ask(c, model="gpt-4")
        assert ask(c).choices[0].message.content is not None  # still serving


def test_an_unknown_route_or_method_answers_in_openais_error_shape(hive, tiny_core_dir):
    with serve(hive, tiny_core_dir) as server:
        for answer, status in [(post(server, "/v1/nothing", json={}), 404),
                               (httpx.get(server.url + "/v1/chat/completions", headers={"Authorization": "Bearer local"}), 405)]:
            error = answer.json()["error"]
            assert answer.status_code == status and error["code"] == status, answer.text
            assert set(error) == {"message", "type", "code"} and "/v1/" in error["message"]
        with pytest.raises(openai.NotFoundError) as raised:
            client(server).with_options(base_url=server.url + "/v2").models.list()
        assert raised.value.body["type"] == "not_found_error"


def test_no_route_takes_a_job_so_python_named_in_one_is_never_imported(hive, tiny_core_dir, tmp_path):
    """The trust model (README, "Limits and trust"): a job that imports Python (make = "pkg.mod:function") comes
    only from the machine's own user, through the CLI or the Python API; the HTTP API has no route that takes a job."""
    marker = tmp_path / "imported"
    spec = {"source": "python", "make": "os:system", "check": f"os:system touch {marker}", "name": "evil"}
    with serve(hive, tiny_core_dir) as server:
        routes = {(path, method) for path, methods in httpx.get(server.url + "/openapi.json").json()["paths"].items()
                  for method in methods}
        assert routes == {("/health", "get"), ("/metrics", "get"), ("/v1/models", "get"), ("/v1/workers", "get"),
                          ("/v1/feedback", "post"), ("/v1/chat/completions", "post"), ("/v1/documents", "post")}
        for path in ("/v1/jobs", "/v1/deploy", "/v1/workers", "/v1/workers/evil"):
            answer = post(server, path, json={"worker": "evil", "job": spec} | spec)
            assert answer.status_code in (404, 405) and answer.json()["error"]["code"] == answer.status_code
        reply = ask(client(server), max_tokens=2)
        answer = post(server, "/v1/feedback", json={"id": reply.id, "reward": 1, "job": spec})
        assert answer.status_code == 400 and "unknown field(s) job" in answer.json()["error"]["message"]
        answer = post(server, "/v1/documents", json={"model": "worker:arith", "job": spec,
                                                     "documents": [{"name": "a.md", "text": "x", "job": spec}]})
        assert answer.status_code == 400 and "unknown field(s) job" in answer.json()["error"]["message"]
    assert hive.store.worker("evil") is None and not marker.exists()


def test_a_tenant_past_its_rate_limit_gets_429_with_retry_after_and_other_tenants_do_not(hive, tiny_core_dir):
    with serve(hive, tiny_core_dir, tenants=Tenants(KEYS), requests_per_minute=2) as server:
        models = lambda key: httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {key}"})  # noqa: E731
        assert [models("key-acme").status_code for _ in range(2)] == [200, 200]
        refused = models("key-acme")
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
        assert refused.json()["error"] == {"message": "too many requests: this server takes 2 a minute from each tenant; "
                                                      "retry after 30 s", "type": "rate_limit_error", "code": 429}
        with pytest.raises(openai.RateLimitError):
            ask(client(server, "key-acme"))
        assert models("key-bravo").status_code == 200 and httpx.get(server.url + "/health").status_code == 200
        assert models("key-nobody").status_code == 401  # a wrong key is refused before it can use anyone's budget
        assert 'apiary_requests_total{endpoint="/v1/models",status="429"} 1.0' in httpx.get(server.url + "/metrics").text


def test_a_request_given_back_to_the_rate_limit_does_not_count_and_never_overfills_it():
    limiter = RateLimiter(2, clock=lambda: 0.0)
    assert [limiter.retry_after("acme") for _ in range(2)] == [None, None]
    limiter.refund("acme")
    assert limiter.retry_after("acme") is None and limiter.retry_after("acme") == 30
    limiter.refund("bravo")  # a full bucket stays full
    assert [limiter.retry_after("bravo") for _ in range(3)] == [None, None, 30]


def test_a_rate_limit_refills_evenly_and_is_off_by_default():
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    assert [limiter.retry_after("acme") for _ in range(60)] == [None] * 60
    assert limiter.retry_after("acme") == 1 and limiter.retry_after("bravo") is None
    now[0] = 2.5  # 2.5 requests' worth refilled
    assert [limiter.retry_after("acme") for _ in range(3)] == [None, None, 1]
    assert all(RateLimiter(0).retry_after("acme") is None for _ in range(1000))
    assert ServeConfig().requests_per_minute == 0
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="rate limit"):
            ServeConfig(requests_per_minute=bad)


def test_a_too_long_prompt_is_refused_with_its_length(hive, tiny_core_dir):
    with serve(hive, tiny_core_dir, max_prompt_tokens=40) as server:
        c = client(server)
        with pytest.raises(openai.BadRequestError, match="at most 40"):
            c.chat.completions.create(model="core", messages=[{"role": "user", "content": "hi " * 60}])
    with serve(hive, tiny_core_dir) as server:  # the tiny model reads 256 positions
        with pytest.raises(openai.BadRequestError, match="context of 256"):
            client(server).chat.completions.create(model="core", messages=[{"role": "user", "content": "hi " * 240}])


def test_tenants_reach_only_their_own_workers_responses_and_feedback(hive, tiny_core_dir):
    with serve(hive, tiny_core_dir, tenants=Tenants(KEYS)) as server:
        acme, bravo = client(server, "key-acme"), client(server, "key-bravo")
        assert {m.id for m in acme.models.list()} == {"core", "worker:acme-sums"}
        assert {m.id for m in bravo.models.list()} == {"core", "worker:bravo-times"}
        with pytest.raises(openai.NotFoundError):
            ask(acme, model="worker:bravo-times")
        with pytest.raises(openai.NotFoundError):
            ask(acme, model="worker:arith")  # the local tenant's worker
        mine = ask(bravo, model="worker:bravo-times")
        assert hive.store.episode(int(mine.id)).tenant == "bravo"
        answer = post(server, "/v1/feedback", key="key-acme", json={"id": mine.id, "correction": "I can train you"})
        assert answer.status_code == 404
        theirs = ask(acme, model="worker:acme-sums")
        answer = post(server, "/v1/feedback", key="key-acme", json={"id": theirs.id, "prefer": mine.id})
        assert answer.status_code == 404  # a preference naming another tenant's response
        assert hive.store.feedback() == []
        assert [w["name"] for w in httpx.get(server.url + "/v1/workers", headers={"Authorization": "Bearer key-acme"})
                .json()["data"]] == ["acme-sums"]
        assert "bravo" not in httpx.get(server.url + "/health").text + httpx.get(server.url + "/metrics").text
        for key in ("wrong-key", None):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            answer = httpx.get(server.url + "/v1/models", headers=headers)
            assert answer.status_code == 401 and "key-acme" not in answer.text
        with pytest.raises(openai.AuthenticationError):
            ask(client(server, "key-nobody"))


def test_keys_file_env_and_localhost_rule(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text('[keys]\n"sk-1" = "acme"\n')
    assert load_tenants(path).tenant("Bearer sk-1") == "acme"
    assert load_tenants(None, env={"APIARY_KEYS": "sk-2=bravo"}).tenant("Bearer sk-2") == "bravo"
    path.write_text("[keys\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_tenants(path)
    with pytest.raises(ValueError, match="without API keys"):
        check_host("0.0.0.0", Tenants())
    check_host("0.0.0.0", Tenants({"k": "t"}))


def test_a_tenant_name_outside_the_name_rule_is_refused_without_echoing_the_key(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text('[keys]\n"sk-1" = "acme"\n"sk-secret" = "../bravo"\n')
    with pytest.raises(ValueError, match=r"keys.toml: entry 2: tenant name '../bravo' is not allowed") as refused:
        load_tenants(path)
    assert "sk-secret" not in str(refused.value)
    with pytest.raises(ValueError, match="APIARY_KEYS: entry 1: tenant name 'a b'"):
        load_tenants(None, env={"APIARY_KEYS": "sk-2=a b"})


def test_hot_swap_serves_the_new_version_and_no_request_fails_during_it(hive, tiny_core_dir, random_adapter):
    add_adapter(hive, random_adapter, "arith", 1, seed=1)
    hive.store.release_worker("arith", 1, "learn")
    with serve(hive, tiny_core_dir) as server:
        c = client(server)
        assert ask(c, model="worker:arith").model_extra["apiary"]["adapter_version"] == 1
        failures, versions, stop = [], [], threading.Event()

        def keep_asking():
            while not stop.is_set():
                try:
                    versions.append(ask(c, model="worker:arith", max_tokens=4).model_extra["apiary"]["adapter_version"])
                except Exception as err:  # noqa: BLE001 - counted
                    failures.append(err)

        threads = [threading.Thread(target=keep_asking) for _ in range(4)]
        for t in threads:
            t.start()
        add_adapter(hive, random_adapter, "arith", 2, seed=2)
        hive.store.release_worker("arith", 2, "gate")
        deadline = time.time() + 20
        while time.time() < deadline and 2 not in versions[-4:]:
            time.sleep(0.05)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert not failures and 1 in versions and 2 in versions
        after = ask(c, model="worker:arith")
        assert after.model_extra["apiary"]["adapter_version"] == 2 and after.system_fingerprint == "core-v0-adapter-v2"
        assert hive.store.episode(int(after.id)).adapter_version == 2
        hive.rollback(1, worker="arith")  # works on the running server
        deadline = time.time() + 20
        while time.time() < deadline and ask(c, model="worker:arith").model_extra["apiary"]["adapter_version"] != 1:
            time.sleep(0.1)
        assert ask(c, model="worker:arith").model_extra["apiary"]["adapter_version"] == 1


def test_a_core_release_and_a_core_rollback_reach_a_running_server(hive, tiny_core_dir, random_adapter):
    with serve(hive, tiny_core_dir) as server:
        c = client(server)
        assert ask(c).model_extra["apiary"]["core_version"] == 0
        random_adapter(hive.store.core_dir(1), seed=3)
        hive.store.add_core_version(CoreVersion(version=1, parent=0, method="linear", path=str(hive.store.core_dir(1))))
        for version, change in [(1, lambda: hive.store.release(1)), (0, lambda: hive.rollback(0))]:
            change()
            deadline = time.time() + 20
            while time.time() < deadline and ask(c).model_extra["apiary"]["core_version"] != version:
                time.sleep(0.1)
            assert ask(c).system_fingerprint == f"core-v{version}"
        assert ask(c, model="worker:arith").model_extra["apiary"]["core_version"] == 0  # workers stay on their core


def test_feedback_trains_the_worker_in_the_background_behind_the_gate(hive, tiny_core_dir):
    learning = LearningConfig(min_feedback=4, poll_seconds=0.5)
    with serve(hive, tiny_core_dir, learn=True, learning=learning) as server:
        c = client(server)
        for n in range(4):
            reply = ask(c, model="worker:arith", temperature=1.0)
            assert post(server, "/v1/feedback", json={"id": reply.id, "correction": str(n)}).status_code == 200
        deadline, worker = time.time() + 240, None
        while time.time() < deadline:
            worker = httpx.get(server.url + "/v1/workers").json()["data"][0]
            gate = worker["last_gate"]  # the decision is stored just before the release: wait for the release too
            if gate is not None and worker["served_version"] == worker["live_version"] == (1 if gate["passed"] else 0):
                break
            time.sleep(0.5)
        assert worker["last_gate"]["candidate"] == "worker:arith:1" and worker["latest_version"] == 1
        assert worker["unlearned_feedback"] == 0
        assert worker["live_version"] == (1 if worker["last_gate"]["passed"] else 0) == worker["served_version"]
        assert sorted(hive.store.feedback_learned("arith", 1)) == [f.id for f in hive.store.feedback("arith")]
        assert "apiary_gate_decisions_total" in httpx.get(server.url + "/metrics").text


def test_learning_after_a_refusal_starts_from_the_live_version(hive):
    refuse = GateConfig(max_retention_kl=0.0)  # any change to the core is refused
    outcomes = []
    for n in range(2):
        for episode in hive.attempt("rg:chain_sum", "arith", n=4, overrides=ONE_DIGIT):
            hive.feedback(episode.id, correction=episode.answer)
        outcomes.append(learn_and_gate(hive.store, hive.evaluator, hive.worker("arith"), ["corrections"],
                                       refuse))
    assert [o["gate"]["passed"] for o in outcomes] == [False, False]
    assert hive.store.worker("arith").live_version == 0
    versions = hive.store.adapter_versions("arith")
    assert [(v.version, v.parent) for v in versions] == [(1, 0), (2, 0)]  # v2 was not built on the refused v1
    assert [d.candidate for d in hive.store.decisions()] == ["worker:arith:1", "worker:arith:2"]


def test_the_server_learns_corrections_and_critiques_by_self_distillation_when_told(hive):
    first, second = hive.attempt("rg:chain_sum", "arith", n=2, overrides=ONE_DIGIT)
    hive.feedback(first.id, correction=first.answer)
    hive.feedback(second.id, critique="Give only the number.")
    # the default ("mixed"): corrections by self-distillation, critiques by revision (the only way they were measured)
    assert ready_workers(hive.store, 2) == [(hive.store.worker("arith"), ["critiques", "self_distill"])]
    assert ready_workers(hive.store, 2, "separate") == [(hive.store.worker("arith"), ["corrections", "critiques"])]
    assert ready_workers(hive.store, 2, "self_distill") == [(hive.store.worker("arith"), ["self_distill"])]
    assert ready_workers(hive.store, 3, "self_distill") == []
    with pytest.raises(ValueError, match="text learner .sft. is not one of mixed, separate, self_distill"):
        LearningConfig(text_learner="sft")


def test_background_runs_take_the_learning_rates_and_distil_back_the_server_was_given(hive):
    config = LearningConfig(learning_rates={"corrections": 2e-4, "distil_back": 5e-5}, distil_back=True)
    configs = config.configs_for(["corrections", "distil_back"])
    assert configs["corrections"].learning_rate == 2e-4 and configs["distil_back"].learning_rate == 5e-5
    assert config.configs_for(["critiques"]) == {}  # a run without that learner keeps every default
    for episode in hive.attempt("rg:chain_sum", "arith", n=4, overrides=ONE_DIGIT):
        hive.feedback(episode.id, correction=episode.answer)
    outcome = learn_and_gate(hive.store, hive.evaluator, hive.worker("arith"), ["corrections", "distil_back"],
                             GateConfig(), configs)
    (run,) = hive.store.table_rows("runs")
    assert outcome["learn"]["learners"] == ["corrections", "distil_back"]
    assert run["config"]["learners"]["corrections"]["learning_rate"] == 2e-4
    assert run["config"]["learners"]["distil_back"]["learning_rate"] == 5e-5
    for bad, match in [({"corrections": 0.0}, "number > 0"), ({"corrections": "fast"}, "number > 0"),
                       ({"sft": 1e-4}, "sft")]:
        with pytest.raises(ValueError, match=match):
            LearningConfig(learning_rates=bad)


def test_serve_refuses_a_learning_rate_without_its_learner(tmp_path):
    from typer.testing import CliRunner

    from apiary.cli import app

    result = CliRunner().invoke(app, ["serve", "--lr", "1e-4", "--hive", str(tmp_path / "hive")])
    assert result.exit_code == 2 and "NAME=RATE" in result.output
    result = CliRunner().invoke(app, ["serve", "--lr", "sft=1e-4", "--hive", str(tmp_path / "hive")])
    assert result.exit_code == 2 and "unknown learner" in result.output
