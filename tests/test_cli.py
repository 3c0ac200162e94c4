"""The CLI's --json contract and its bad-input errors, run in-process with typer's runner."""

import json

from typer.testing import CliRunner

from apiary.cli import app

runner = CliRunner()
CHAIN = ["rg:chain_sum", "min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "heldout_size=8"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_learn_eval_export_json(tmp_path, tiny_core_dir):
    hive = tmp_path / "hive"
    result = invoke("learn", *CHAIN, "--worker", "arith", "--steps", "2", "--prompts", "2", "--samples", "2",
                    "--max-new-tokens", "3", "--hive", hive, "--core", tiny_core_dir, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["worker"] == "arith" and report["steps"] == 2 and report["episodes"] == 8
    assert 0 <= report["before"] <= 1 and 0 <= report["after"] <= 1 and report["heldout_items"] == 8
    result = invoke("eval", "--worker", "arith", "--hive", hive, "--core", tiny_core_dir, "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores[0]["job"] == "chain_sum" and scores[0]["adapter_version"] == report["adapter_version"]
    result = invoke("export", "--hive", hive, "--format", "jsonl", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["episodes"]["rows"] == 8


def test_unknown_task_is_a_clear_error(tmp_path, tiny_core_dir):
    result = invoke("learn", "rg:chain_summ", "--worker", "w", "--steps", "1", "--hive", tmp_path, "--core", tiny_core_dir, "--json")
    assert result.exit_code == 2
    assert "did you mean chain_sum" in json.loads(result.stdout)["error"]


def test_missing_core_and_missing_budget(tmp_path):
    result = invoke("eval", *CHAIN, "--hive", tmp_path, "--core", tmp_path / "nope", "--json")
    assert result.exit_code == 2 and "does not exist" in json.loads(result.stdout)["error"]
    result = invoke("learn", *CHAIN, "--worker", "w", "--hive", tmp_path, "--json")
    assert result.exit_code == 2 and "budget" in json.loads(result.stdout)["error"]
