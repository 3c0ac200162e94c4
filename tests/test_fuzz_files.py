"""Property-based tests (Hypothesis) of what users hand the command line: job files, feedback files and
arguments. Whatever they hold, `apiary` answers with a result or a clear error (exit 2, a message, no
traceback), and a refused command writes nothing to the hive. Seeded and small; FUZZ_EXAMPLES fuzzes longer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from apiary import Hive
from apiary.cli import app
from apiary.store import schema as tables
from apiary.store.records import Episode

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=6)
PROMPTS = st.sampled_from(["2 + 2", "3 + 4", "", "  ", "5 * 6"]) | st.text(max_size=12)
JOB_RECORDS = st.fixed_dictionaries({}, optional={"prompt": PROMPTS | JSON_VALUES, "question": PROMPTS,
                                                  "answer": JSON_VALUES, "tag": JSON_VALUES})
FEEDBACK_RECORDS = st.fixed_dictionaries({}, optional={
    "episode_id": st.sampled_from([1, 2, 3, 10 ** 30, -1, "1", True, None]), "id": st.sampled_from([1, 2, "2", 1.5]),
    "reward": st.sampled_from([0, 0.5, 1, 2, -0.1, float("nan"), "0.5", True, None]) | st.floats(),
    "correction": st.sampled_from(["4", "", " ", None, ["4"], 4]), "critique": st.text(max_size=6) | JSON_VALUES,
    "prefer": st.sampled_from([1, 2, 3, "2", None]), "by": st.sampled_from(["ann", "", None, 7]), "rating": st.integers()})


def lines(records):
    """JSONL lines: JSON objects, other JSON values and text that is not JSON at all."""
    line = records.map(json.dumps) | JSON_VALUES.map(json.dumps) | st.text(max_size=20).filter(lambda t: "\n" not in t)
    return st.lists(line, max_size=6).map(lambda ls: "\n".join(ls) + "\n")


def row_counts(hive: Hive) -> dict[str, int]:
    return {name: len(hive.store.table_rows(name)) for name in tables.metadata.tables}


def cli(*args: str):
    return CliRunner(env={"COLUMNS": "1000"}).invoke(app, list(args))  # wide: no message wrapped mid-path


def said(result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def assert_clear(result) -> None:
    """Exit 0, or exit 2 with a message; never a Python exception or traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output, result.output
    if result.exit_code:
        assert result.output.strip(), "refused without saying why"


@pytest.fixture(scope="module")
def hive(tmp_path_factory, tiny_core_dir) -> Hive:
    """A hive with three served episodes (1 and 2 answer one prompt, 3 another): feedback to give."""
    h = Hive(tmp_path_factory.mktemp("fuzz-files") / "hive", core=str(tiny_core_dir))
    ask = lambda text, answer: Episode(job="chat", task_id="t", messages=[{"role": "user", "content": text}],  # noqa: E731
                                       completion=answer, score=None, origin="serve")
    h.store.add_episodes([ask("2 + 2", "4"), ask("2 + 2", "5"), ask("3 + 4", "7")])
    return h


def test_a_jsonl_job_of_any_content_deploys_or_is_refused_clearly_writing_nothing(hive, tiny_core_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("jobs")

    @FUZZ
    @given(text=lines(JOB_RECORDS), heldout=st.sampled_from([1, 50, 0, -3, "x"]))
    def check(text, heldout):
        (folder / "data.jsonl").write_text(text, encoding="utf-8")
        (folder / "job.toml").write_text(f'name = "fuzzed"\nsource = "jsonl"\npath = "data.jsonl"\n'
                                         f'heldout_size = {json.dumps(heldout)}\n', encoding="utf-8")
        before = row_counts(hive)
        result = cli("deploy", str(folder / "job.toml"), "--worker", "fuzzed", "--hive", str(hive.path),
                     "--core", str(tiny_core_dir))
        assert_clear(result)
        if result.exit_code:
            assert row_counts(hive) == before, result.output
            assert "job.toml" in said(result) or "data.jsonl" in said(result), result.output

    check()


def test_a_feedback_file_of_any_content_is_recorded_whole_or_refused_whole(hive):
    path = hive.path / "feedback.jsonl"

    @FUZZ
    @given(text=lines(FEEDBACK_RECORDS))
    def check(text):
        path.write_text(text, encoding="utf-8")
        before = row_counts(hive)
        result = cli("feedback", "--file", str(path), "--hive", str(hive.path))
        assert_clear(result)
        after = row_counts(hive)
        if result.exit_code:
            assert after == before and "nothing was recorded" in said(result), result.output
        else:
            given_lines = [line for line in text.splitlines() if line.strip()]
            assert after["feedback"] - before["feedback"] == len(given_lines)

    check()


COMMANDS = ["status", "feedback", "deploy", "rollback", "export", "simulate-feedback"]
TOKENS = st.sampled_from(["--worker", "--json", "--reward", "--correction", "--prefer", "--file", "--list", "--by",
                          "--version", "--kind", "--n", "--seed", "--tenant", "--format", "--out", "--core", "-w",
                          "1", "2", "0", "-1", "1e999", "nan", "99999999999999999999999", "", " ", "rg:nope", "..",
                          "../../escaped", "arith", "x" * 300, "\x00", "é", "corrections"]) | st.text(max_size=10)


def test_any_command_line_gets_a_result_or_a_clear_error_and_a_refusal_writes_nothing(hive, tiny_core_dir):
    @FUZZ
    @given(command=st.sampled_from(COMMANDS), args=st.lists(TOKENS, max_size=6))
    def check(command, args):
        before = row_counts(hive)
        files = set(Path(hive.path).rglob("*"))
        result = cli(command, *args, "--hive", str(hive.path))
        assert_clear(result)
        if result.exit_code:
            assert row_counts(hive) == before, (args, result.output)
            assert {f for f in Path(hive.path).rglob("*") if not f.name.startswith("store.")} <= files, (args, result.output)

    check()


# -- what the fuzzing found, one test each ------------------------------------------------------------

def test_an_empty_feedback_file_is_refused_with_a_message_not_an_index_error(hive, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n  \n")
    result = cli("feedback", "--file", str(tmp_path / "empty.jsonl"), "--hive", str(hive.path))
    assert result.exit_code == 2 and "no feedback in it" in said(result) and result.exception.__class__ is SystemExit


@pytest.mark.parametrize("line, words", [('heldout_size = "x"', "heldout_size must be a whole number"),
                                         ("heldout_size = 0", "heldout_size must be"),
                                         ("max_tokens = 2.5", "max_tokens must be a whole number")])
def test_a_job_file_count_that_is_not_a_whole_number_names_the_file_and_the_key(tmp_path, line, words):
    (tmp_path / "data.jsonl").write_text('{"prompt": "1+1", "answer": 2}\n{"prompt": "2+2", "answer": 4}\n')
    (tmp_path / "job.toml").write_text(f'source = "jsonl"\npath = "data.jsonl"\n{line}\n')
    result = cli("deploy", str(tmp_path / "job.toml"), "--worker", "w", "--hive", str(tmp_path / "hive"))
    assert result.exit_code == 2 and words in said(result) and "job.toml" in said(result), result.output
