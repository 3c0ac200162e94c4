"""Every release goes through the worker gate: `learn` (Python and CLI) makes a new version live only if
it passed, unless the user overrides the gate, which is recorded and shown."""

import json

import pytest
from typer.testing import CliRunner

from apiary import CorrectionsConfig, GateConfig, Hive
from apiary.cli import app
from apiary.hive.report import write_report
from apiary.hive.worker_gate import OVERRIDE

ONE_DIGIT = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "heldout_size=4"]
ONE_PASS = {"corrections": CorrectionsConfig(epochs=1, batch_size=4)}
STRICT = GateConfig(max_retention_kl=0.0)  # corrections change the model, so any retention KL above 0 refuses
LENIENT = GateConfig(tolerance=1.0, max_retention_kl=1e9, max_flip_rate=1.0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for this file: the tiny core's retention references and base scores are computed once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def hive(tmp_path, tiny_core_dir, cache, monkeypatch):
    monkeypatch.setenv("APIARY_CACHE", str(cache))
    return Hive(tmp_path / "hive", core=str(tiny_core_dir))


def learn_corrections(hive: Hive, **kwargs):
    """The worker answers 4 tasks, each answer is corrected, and it learns from the corrections."""
    for episode in hive.attempt("rg:chain_sum", "arith", n=4, overrides=ONE_DIGIT):
        hive.feedback(episode.id, correction=episode.answer)
    return hive.learn("rg:chain_sum", "arith", learners=["corrections"], configs=ONE_PASS, overrides=ONE_DIGIT,
                      show_progress=False, **kwargs)


def test_learn_keeps_a_refused_version_but_not_live_and_learns_on_from_the_live_one(hive):
    first = learn_corrections(hive, gate=STRICT)
    assert first.adapter_version == 1 and not first.gate.passed and not first.gate.released_now
    assert first.gate.reasons[0].startswith("retention KL") and first.gate.retention_kl > 0 and first.gate.flips["items"]
    assert first.live_version == 0 and (hive.worker("arith").live_version, hive.worker("arith").latest_version) == (0, 1)
    second = learn_corrections(hive, gate=STRICT)
    assert second.start_version == 0 and second.live_version == 0
    assert [(v.version, v.parent) for v in hive.store.adapter_versions("arith")] == [(1, 0), (2, 0)]
    [row] = hive.status()["workers"]
    assert row["released_by"] == "pin" and row["last_gate"]["version"] == 2 and not row["last_gate"]["released"]
    assert [d.candidate for d in hive.store.decisions()] == ["worker:arith:1", "worker:arith:2"]


def test_learn_releases_a_version_that_passed_the_gate(hive):
    result = learn_corrections(hive, gate=LENIENT)
    assert result.gate.passed and result.gate.released_now and result.gate.reasons == []
    assert result.gate.config["max_retention_kl"] == 1e9 and result.live_version == 1
    [row] = hive.status()["workers"]
    assert (row["live_version"], row["released_by"]) == (1, "gate") and row["last_gate"]["released"]


def test_release_ungated_makes_a_refused_version_live_and_the_override_is_recorded(hive, tmp_path):
    result = learn_corrections(hive, gate=STRICT, release="ungated")
    assert result.live_version == 1 and result.gate.released_now and not result.gate.passed
    assert result.gate.override == OVERRIDE and result.gate.reasons == [OVERRIDE]
    assert result.gate.retention_kl is None  # the user skipped the gate: the retention suite is not run
    [decision] = hive.store.decisions()
    assert decision.evidence["override"] == OVERRIDE and not decision.passed
    [row] = hive.status()["workers"]
    assert row["released_by"] == "ungated" and row["last_gate"]["override"] == OVERRIDE and row["last_gate"]["released"]
    report = write_report(hive.store, tmp_path / "report")
    assert "| arith | v1 |" in (tmp_path / "report" / "report.md").read_text()
    assert "yes, ungated by the user" in (tmp_path / "report" / "report.md").read_text()
    assert report["status"]["worker_gates"][0]["override"] == OVERRIDE


def test_no_release_measures_and_records_but_releases_nothing(hive):
    result = learn_corrections(hive, gate=LENIENT, release="none")
    assert result.gate.passed and not result.gate.released_now and result.live_version == 0
    assert [d.passed for d in hive.store.decisions()] == [True]
    with pytest.raises(ValueError, match="'sometimes' is not a valid Release"):
        learn_corrections(hive, release="sometimes")


def test_cli_learn_shows_the_gate_and_status_shows_an_ungated_release(tmp_path, tiny_core_dir, cache, monkeypatch):
    monkeypatch.setenv("APIARY_CACHE", str(cache))
    runner, hive = CliRunner(), tmp_path / "hive"

    def run(*args):
        return runner.invoke(app, [str(a) for a in (*args, "--hive", hive)])

    learn = ("learn", "rg:chain_sum", *ONE_DIGIT, "--worker", "arith", "--learners", "corrections", "--batch", "4",
             "--epochs", "1", "--core", tiny_core_dir)
    for _ in range(2):
        assert run("attempt", "rg:chain_sum", *ONE_DIGIT, "--worker", "arith", "--n", "4", "--core", tiny_core_dir,
                   "--json").exit_code == 0
        assert run("simulate-feedback", "--worker", "arith", "--kind", "correction", "--n", "4", "--json").exit_code == 0
        if _ == 0:
            result = run(*learn, "--max-kl", "0", "--json")
            assert result.exit_code == 0, result.output
            out = json.loads(result.stdout)
            gate = out["gate"]
            assert not gate["passed"] and gate["reasons"][0].startswith("retention KL") and gate["retention_kl"] > 0
            assert {"candidate", "released", "flips", "contamination", "config", "override"} <= set(gate)
            assert out["live_version"] == 0 and out["adapter_version"] == 1
    result = run(*learn, "--max-kl", "0", "--release-ungated")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "gate overridden" in said and OVERRIDE in said and "v2 released; live adapter: v2" in said
    status = json.loads(run("status", "--json").stdout)
    assert status["workers"][0]["released_by"] == "ungated" and status["workers"][0]["last_gate"]["override"] == OVERRIDE
    assert "ungated" in " ".join(run("status").output.split())


def test_bad_gate_settings_and_contradicting_release_flags_are_clear_errors(tmp_path, tiny_core_dir):
    base = ("learn", "rg:chain_sum", *ONE_DIGIT, "--worker", "w", "--steps", "1", "--hive", tmp_path, "--core",
            tiny_core_dir, "--json")
    cases = [(("--max-kl", "-1"), "max_retention_kl must be 0 or more"), (("--tolerance", "-0.1"), "tolerance must be"),
             (("--max-flips", "2"), "max_flip_rate must be between 0 and 1"),
             (("--release-ungated", "--no-release"), "contradict")]
    for extra, message in cases:
        result = CliRunner().invoke(app, [str(a) for a in (*base, *extra)])
        assert result.exit_code == 2 and message in json.loads(result.stdout)["error"], (extra, result.output)
    result = CliRunner().invoke(app, ["consolidate", "--max-kl", "nan", "--hive", str(tmp_path), "--json"])
    assert result.exit_code == 2 and "max_retention_kl must be 0 or more" in json.loads(result.stdout)["error"]
