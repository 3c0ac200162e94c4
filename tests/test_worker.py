"""One worker record read once, and one meaning of live and latest: after a rollback, what is served is
what status shows, eval measures, learn builds on and consolidation takes."""

import json

import pytest
from typer.testing import CliRunner

from apiary import ConsolidateConfig, Hive
from apiary.cli import app
from apiary.learners.grpo import GRPOConfig
from apiary.store.records import AdapterVersion, Worker
from apiary.store.store import Store

CONFIG = GRPOConfig(prompts_per_step=2, samples_per_prompt=2, max_new_tokens=3, learning_rate=1e-2)
ONE_DIGIT = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "heldout_size=4"]


def test_the_store_returns_typed_workers_with_live_and_latest_versions(tmp_path):
    store = Store(tmp_path)
    store.ensure_worker("w", "j", "core", {"origin": {"spec": "rg:chain_sum", "overrides": ["a=1"]}}, tenant="acme")
    store.ensure_worker("fresh", "j", "core", {})
    for version in (1, 2):
        store.add_adapter_version(AdapterVersion(worker="w", version=version, parent=version - 1, path="-", step=1), [])
    w = store.worker("w")
    assert isinstance(w, Worker) and (w.live_version, w.latest_version, w.has_release) == (2, 2, False)
    assert w.origin == ("rg:chain_sum", ["a=1"]) and w.tenant == "acme" and w.core_version == 0
    for version, reason in [(1, "learn"), (2, "learn"), (1, "rollback")]:
        store.release_worker("w", version, reason)
    assert [(w.name, w.live_version, w.latest_version, w.has_release) for w in store.workers()] == [
        ("fresh", 0, 0, False), ("w", 1, 2, True)]
    assert store.worker("nobody") is None and store.worker("fresh").origin is None


@pytest.fixture
def rolled_back(tmp_path, tiny_core_dir, monkeypatch):
    """A worker that learned v1 and v2 (each released by the user's override of the gate: these tests are about
    live and latest, not the gate), then was rolled back to v1."""
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    hive = Hive(tmp_path / "hive", core=str(tiny_core_dir))
    for _ in range(2):
        hive.learn("rg:chain_sum", "arith", steps=1, config=CONFIG, overrides=ONE_DIGIT, show_progress=False,
                   release="ungated")
    assert hive.rollback(1, worker="arith") == 1
    return hive


def test_after_a_rollback_status_and_eval_use_the_live_version(rolled_back):
    hive = rolled_back
    [row] = hive.status()["workers"]
    assert (row["live_version"], row["latest_version"]) == (1, 2)
    live = [e for e in hive.store.evals("arith") if e.adapter_version == 1][-1]
    assert row["heldout"] == live.score
    assert [r.adapter_version for r in hive.eval(worker="arith")] == [1]
    assert [r.adapter_version for r in hive.eval(worker="arith", version=2)] == [2]
    with pytest.raises(ValueError, match="no adapter version 7"):
        hive.eval(worker="arith", version=7)


def test_after_a_rollback_learn_builds_on_the_live_version_unless_told_otherwise(rolled_back):
    hive = rolled_back
    result = hive.learn("rg:chain_sum", "arith", steps=1, config=CONFIG, overrides=ONE_DIGIT, show_progress=False,
                        release="none")
    assert (result.start_version, result.adapter_version, result.live_version) == (1, 3, 1)
    assert result.before == [e for e in hive.store.evals("arith") if e.adapter_version == 1][0].score
    result = hive.learn("rg:chain_sum", "arith", steps=1, config=CONFIG, overrides=ONE_DIGIT, show_progress=False,
                        start_version=2, release="ungated")
    assert [(v.version, v.parent) for v in hive.store.adapter_versions("arith")] == [(1, 0), (2, 1), (3, 1), (4, 2)]
    assert hive.worker("arith").live_version == 4


def test_after_a_rollback_consolidation_takes_the_live_version(rolled_back):
    result = rolled_back.consolidate(config=ConsolidateConfig(method="linear", release=False), show_progress=False)
    assert [(s["worker"], s["adapter_version"]) for s in result.sources] == [("arith", 1)]
    assert rolled_back.store.core_versions()[0].sources[0]["adapter_version"] == 1


def test_a_worker_rolled_back_to_the_core_alone_is_no_consolidation_source(rolled_back):
    rolled_back.rollback(0, worker="arith")
    with pytest.raises(ValueError, match="nothing to consolidate"):
        rolled_back.consolidate(config=ConsolidateConfig(method="linear"), show_progress=False)


def test_a_handle_reads_the_worker_once_and_refuses_unknown_workers_and_versions(rolled_back):
    handle = rolled_back.worker("arith")
    assert (handle.name, handle.job.name, handle.core.version, handle.version(), handle.version(0)) == (
        "arith", "chain_sum", 0, 1, 0)
    with pytest.raises(ValueError, match="no worker named 'nobody'"):
        rolled_back.worker("nobody")
    with pytest.raises(ValueError, match="no adapter version 3"):
        handle.version(3)


def test_cli_status_eval_and_learn_after_a_worker_rollback(tmp_path, tiny_core_dir):
    runner, hive = CliRunner(), tmp_path / "hive"

    def run(*args):
        result = runner.invoke(app, [str(a) for a in (*args, "--hive", hive, "--json")])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    learn = ("learn", "rg:chain_sum", *ONE_DIGIT, "--worker", "arith", "--steps", "1", "--prompts", "2", "--samples", "2",
             "--max-new-tokens", "3", "--core", tiny_core_dir)
    run(*learn, "--release-ungated"), run(*learn, "--release-ungated")  # both go live: this test is not about the gate
    assert run("rollback", "1", "--worker", "arith") == {"live_version": 1, "worker": "arith"}
    [row] = run("status")["workers"]
    assert (row["live_version"], row["latest_version"]) == (1, 2)
    assert [r["adapter_version"] for r in run("eval", "--worker", "arith", "--core", tiny_core_dir)] == [1]
    assert [r["adapter_version"] for r in run("eval", "--worker", "arith", "--version", "2", "--core", tiny_core_dir)] == [2]
    assert run(*learn, "--from-version", "0")["start_version"] == 0
    assert [(v.version, v.parent) for v in Store(hive).adapter_versions("arith")][-1] == (3, 0)
