"""A light start, clear errors for optional parts, and what a person reads in the CLI's tables."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from apiary.cli import app, task_parts
from apiary.extras import MissingExtraError, require

runner = CliRunner()


def test_help_does_not_import_the_model_stack():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom apiary.cli import app\n"
            "for args in (['--help'], ['status', '--help'], ['learn', '--help']):\n"
            "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
            "print(sorted({'torch', 'transformers', 'matplotlib', 'fastapi', 'trl'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_still_import_from_the_package():
    from apiary import GRPOConfig, Hive

    assert Hive.__name__ == "Hive" and GRPOConfig().learning_rate > 0
    with pytest.raises(AttributeError):
        import apiary

        apiary.NoSuchThing  # noqa: B018


def test_serve_help_shows_the_keys_table_literally():
    result = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "[keys] table" in result.output


def _without(monkeypatch, *missing: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))


def test_a_missing_extra_names_the_pip_command(monkeypatch):
    _without(monkeypatch, "fastapi")
    with pytest.raises(MissingExtraError, match=r"pip install 'apiary\[serve\]'"):
        require("serve", "fastapi", "uvicorn")
    result = runner.invoke(app, ["serve", "--port", "1"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "pip install 'apiary[serve]'" in result.output


def test_a_game_job_without_textarena_names_the_games_extra(monkeypatch, tmp_path):
    _without(monkeypatch, "textarena")
    result = runner.invoke(app, ["learn", "ta:GuessTheNumber-v0", "--worker", "g", "--steps", "1", "--hive", str(tmp_path),
                                 "--json"])
    assert result.exit_code == 2 and "pip install 'apiary[games]'" in json.loads(result.stdout)["error"]


def test_feedback_list_of_an_unknown_worker_is_an_error(tmp_path):
    result = runner.invoke(app, ["feedback", "--list", "nobody", "--hive", str(tmp_path)])
    assert result.exit_code == 2 and "no worker named 'nobody'" in result.output


def test_status_of_a_new_hive_shows_the_base_core(tmp_path):
    result = runner.invoke(app, ["status", "--hive", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "v0" in result.output and "base" in result.output
    assert json.loads(runner.invoke(app, ["status", "--hive", str(tmp_path), "--json"]).stdout)["base_core"]["version"] == 0


def test_attempt_shows_what_tells_tasks_apart():
    preamble, instruction = "State the final answer to the following arithmetic problem: ", " = Answer with only the number."
    assert task_parts([preamble + "5 + 4" + instruction, preamble + "17 + 5" + instruction]) == ["5 + 4", "17 + 5"]
    assert task_parts(["x" * 100]) == ["..." + "x" * 60]  # one long question: its end, where the specifics are
