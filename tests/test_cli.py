"""The CLI's --json contract and its bad-input errors, run in-process with typer's runner."""

import json

import pytest
from typer.testing import CliRunner

from apiary.cli import app
from apiary.store.store import Store

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
    # the 2 steps, then distil_back's closing phase (a step of its own; `apiary learn` distils back by default)
    assert report["worker"] == "arith" and report["steps"] == 3 and report["episodes"] == 8
    assert report["learners"] == ["rl", "distil_back"] and report["closing_phase"] is True
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


def test_attempt_feedback_learn_round_trip(tmp_path, tiny_core_dir):
    """attempt -> feedback (one, and a file) -> learn from corrections alone -> the log shows who learned what."""
    hive = tmp_path / "hive"
    result = invoke("attempt", *CHAIN, "--worker", "w", "--n", "3", "--samples", "2", "--hive", hive, "--core", tiny_core_dir,
                    "--json")
    assert result.exit_code == 0, result.output
    episodes = json.loads(result.stdout)
    assert len(episodes) == 6 and episodes[0]["messages"] == episodes[1]["messages"]
    first, second = episodes[0], episodes[1]
    result = invoke("feedback", first["id"], "--correction", first["answer"], "--by", "ann", "--hive", hive, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["by"] == "ann"
    lines = [{"episode_id": e["id"], "correction": e["answer"]} for e in episodes[2:]]
    lines.append({"episode_id": first["id"], "prefer": second["id"]})
    path = tmp_path / "fb.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = invoke("feedback", "--file", path, "--hive", hive, "--json")
    assert result.exit_code == 0, result.output
    result = invoke("learn", *CHAIN, "--worker", "w", "--learners", "corrections,preferences", "--epochs", "1", "--batch", "2",
                    "--no-distil-back", "--hive", hive, "--core", tiny_core_dir, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["learners"] == ["corrections", "preferences"] and report["feedback"] == 6 and report["steps"] == 3
    log = json.loads(invoke("feedback", "--list", "w", "--hive", hive, "--json").stdout)
    assert len(log) == 6 and {row["learned_by_version"] for row in log} == {report["adapter_version"]}
    result = invoke("learn", *CHAIN, "--worker", "w", "--learners", "corrections", "--hive", hive, "--core", tiny_core_dir,
                    "--json")
    assert json.loads(result.stdout)["steps"] == 0  # nothing new to learn from


def test_a_person_sees_what_to_correct_and_when_the_feedback_is_used_up(tmp_path, tiny_core_dir):
    """attempt's table shows each task's own part and the expected answer; a corrections-only learn
    says it stopped because the feedback ran out."""
    hive = tmp_path / "hive"
    result = runner.invoke(app, [str(a) for a in ("attempt", *CHAIN, "--worker", "w", "--n", "2", "--hive", hive, "--core",
                                                  tiny_core_dir)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "expected" in result.output and "State the final answer" not in result.output  # the shared preamble is cut
    for e in Store(hive).episodes("w"):
        question = e.messages[-1]["content"].split(": ", 1)[1].split(" =")[0]  # e.g. "5 + 4"
        assert f" {question} " in result.output and f" {e.answer} " in result.output
        assert invoke("feedback", e.id, "--correction", e.answer, "--hive", hive, "--json").exit_code == 0
    result = runner.invoke(app, [str(a) for a in ("learn", *CHAIN, "--worker", "w", "--learners", "corrections", "--batch", "1",
                                                  "--hive", hive, "--core", tiny_core_dir)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "feedback is used up" in result.output and "reward 0.00" not in result.output


def test_progress_of_a_feedback_step_shows_feedback_and_loss_not_reward():
    from apiary.hive.training import _step_figures
    from apiary.learners.common import StepStats

    stats = StepStats(reward_mean=0.0, trained_samples=2, generated_tokens=0, trained_tokens=10, generate_seconds=0.0,
                      train_seconds=0.1, loss=0.5, extra={"episodes": 0, "feedback": 2})
    assert _step_figures(3, stats) == "step 3  feedback 2  loss 0.500"
    stats.extra = {"episodes": 4, "feedback": 0}
    assert _step_figures(3, stats) == "step 3  reward 0.00  loss 0.500"


def test_bad_feedback_exits_2_and_records_nothing(tmp_path, tiny_core_dir):
    hive = tmp_path / "hive"
    episodes = json.loads(invoke("attempt", *CHAIN, "--worker", "w", "--n", "2", "--hive", hive, "--core", tiny_core_dir,
                                 "--json").stdout)
    cases = [
        (("feedback", episodes[0]["id"], "--reward", "1.5"), "reward must be a number in [0, 1]"),
        (("feedback", 999, "--reward", "1"), "no episode 999"),
        (("feedback", episodes[0]["id"], "--correction", " "), "empty correction"),
        (("feedback", episodes[0]["id"], "--prefer", episodes[1]["id"]), "different prompts"),
        (("feedback", episodes[0]["id"]), "exactly one"),
        (("feedback",), "give an EPISODE"),
    ]
    for args, message in cases:
        result = invoke(*args, "--hive", hive, "--json")
        assert result.exit_code == 2 and message in json.loads(result.stdout)["error"], (args, result.output)
    path = tmp_path / "fb.jsonl"
    path.write_text(json.dumps({"episode_id": episodes[0]["id"], "reward": 1}) + "\n{oops\n")
    result = invoke("feedback", "--file", path, "--hive", hive, "--json")
    assert result.exit_code == 2 and "line 2: not valid JSON" in json.loads(result.stdout)["error"]
    assert json.loads(invoke("feedback", "--list", "w", "--hive", hive, "--json").stdout) == []


def test_consolidate_status_rollback_report(tmp_path, tiny_core_dir, monkeypatch):
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    hive = tmp_path / "hive"
    for worker, task in [("arith", CHAIN), ("arith2", CHAIN[:2] + ["max_terms=3"] + CHAIN[3:])]:  # two chain_sum jobs
        assert invoke("learn", *task, "--worker", worker, "--steps", "1", "--prompts", "2", "--samples", "2",
                      "--max-new-tokens", "3", "--release-ungated",  # live without the worker gate: the core gate is tested
                      "--hive", hive, "--core", tiny_core_dir, "--json").exit_code == 0
    result = invoke("consolidate", "--method", "linear", "--tolerance", "1", "--max-kl", "10", "--hive", hive,
                    "--core", tiny_core_dir, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["version"] == 1 and out["passed"] and out["current_core"] == 1
    assert {(j["job"], j["worker"]) for j in out["jobs"]} == {("chain_sum@arith", "arith"), ("chain_sum@arith2", "arith2")}
    assert all({"released", "worker_score", "candidate", "gain_kept"} <= set(j) for j in out["jobs"])
    refused = json.loads(invoke("consolidate", "--method", "ties", "--hive", hive, "--core", tiny_core_dir, "--json").stdout)
    assert "nothing to consolidate" in refused["error"]  # both workers sit on v0, and v1 is now current
    status = json.loads(invoke("status", "--hive", hive, "--json").stdout)
    assert status["current_core"] == 1 and [c["released"] for c in status["core_versions"]] == [True]
    assert json.loads(invoke("rollback", "0", "--hive", hive, "--json").stdout) == {"current_core": 0}
    assert invoke("rollback", "7", "--hive", hive, "--json").exit_code == 2
    result = invoke("report", "--hive", hive, "--json")
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)["files"]
    assert {p.rsplit("/", 1)[1] for p in files} == {"report.md", "learning_curves.png", "forgetting.png", "retention.png"}
    text = (hive / "report" / "report.md").read_text()
    assert "core v1" in text and "| v1 | v0 | linear |" in text


def test_deploy_learn_release_and_worker_rollback(tmp_path, tiny_core_dir):
    hive = tmp_path / "hive"
    out = json.loads(invoke("deploy", *CHAIN, "--worker", "sums", "--tenant", "acme", "--hive", hive, "--core",
                            tiny_core_dir, "--json").stdout)
    assert out == {"worker": "sums", "job": "chain_sum", "tenant": "acme", "core_version": 0}
    result = invoke("deploy", "rg:products", "--worker", "sums", "--hive", hive, "--core", tiny_core_dir, "--json")
    assert result.exit_code == 2 and "already works on job" in json.loads(result.stdout)["error"]
    for _ in range(2):  # each learn run releases the version it ends with, by the user's override of the gate
        assert invoke("learn", *CHAIN, "--worker", "sums", "--steps", "1", "--prompts", "2", "--samples", "2",
                      "--max-new-tokens", "3", "--release-ungated", "--hive", hive, "--core", tiny_core_dir,
                      "--json").exit_code == 0
    assert json.loads(invoke("rollback", "1", "--worker", "sums", "--hive", hive, "--json").stdout) == {
        "live_version": 1, "worker": "sums"}
    result = invoke("rollback", "5", "--worker", "sums", "--hive", hive, "--json")
    assert result.exit_code == 2 and "no adapter version 5" in json.loads(result.stdout)["error"]


def test_learn_kl_anchor_and_rank_options_reach_the_run(tmp_path, tiny_core_dir):
    from sqlalchemy import select

    from apiary.store import schema

    hive = tmp_path / "hive"
    result = invoke("learn", *CHAIN, "--worker", "w", "--steps", "1", "--prompts", "2", "--samples", "2",
                    "--max-new-tokens", "3", "--kl", "0.5", "--anchor", "2", "--rank", "2", "--lr", "1e-3",
                    "--release-ungated", "--hive", hive, "--core", tiny_core_dir, "--json")
    assert result.exit_code == 0, result.output
    store = Store(hive)
    with store.engine.connect() as db:
        learners = db.execute(select(schema.runs.c.config)).scalar_one()["learners"]
    config = learners["rl"]
    assert config["kl_coef"] == 0.5 and config["anchor_weight"] == 2.0 and config["learning_rate"] == 1e-3
    assert learners["distil_back"]["learning_rate"] == 2e-4  # a bare --lr is the named learners' rate, not the phases'
    assert json.loads((store.adapter_dir("w", 1) / "adapter_config.json").read_text())["r"] == 2
    result = invoke("learn", *CHAIN, "--worker", "w", "--steps", "1", "--rank", "4", "--hive", hive, "--core", tiny_core_dir,
                    "--json")
    assert result.exit_code == 2 and "of LoRA rank 2, not 4" in json.loads(result.stdout)["error"]


@pytest.mark.parametrize("options, sampler, precision", [(["--sampler", "int8"], "int8", "float32"),
                                                        (["--precision", "bf16"], "bf16", "bf16"),
                                                        (["--precision", "bf16", "--sampler", "int8"], "int8", "bf16")])
def test_learn_sampler_and_precision_reach_the_runs_config(tmp_path, tiny_core_dir, options, sampler, precision):
    from sqlalchemy import select

    from apiary.store import schema

    hive = tmp_path / "hive"
    result = invoke("learn", *CHAIN, "--worker", "w", "--steps", "1", "--prompts", "2", "--samples", "2",
                    "--max-new-tokens", "3", *options, "--release-ungated", "--hive", hive, "--core", tiny_core_dir,
                    "--json")
    assert result.exit_code == 0, result.output
    with Store(hive).engine.connect() as db:
        config = db.execute(select(schema.runs.c.config)).scalar_one()["learners"]["rl"]
    assert config["sampler"] == sampler and config["update_precision"] == precision and config["is_cap"] == 2.0


def test_bad_kl_anchor_or_rank_exits_2_with_the_setting_named(tmp_path, tiny_core_dir):
    for option, value, message in [("--kl", "-1", "kl_coef must be a number >= 0"), ("--kl", "nan", "kl_coef must be"),
                                   ("--anchor", "-0.5", "anchor_weight must be a number >= 0"),
                                   ("--rank", "0", "rank >= 1"), ("--sampler", "int4", "sampler must be one of float32, int8"),
                                   ("--precision", "fp16", "precision must be one of float32, bf16")]:
        result = invoke("learn", *CHAIN, "--worker", "w", "--steps", "1", option, value, "--hive", tmp_path / "hive",
                        "--core", tiny_core_dir, "--json")
        assert result.exit_code == 2 and message in json.loads(result.stdout)["error"], (option, value, result.output)
    assert not Store(tmp_path / "hive").worker("w")  # nothing learned, no worker made


def test_a_worker_or_tenant_name_that_could_leave_the_hive_exits_2_naming_the_option_and_writes_nothing(tmp_path, tiny_core_dir):
    """`deploy --worker ../../escaped` then `learn` once wrote the adapter, state.json and optimizer.pt two levels above
    the hive's adapters folder."""
    hive = tmp_path / "a" / "b" / "hive"
    for command, option, value in [("deploy", "--worker", "../../escaped"), ("deploy", "--tenant", "../acme"),
                                   ("learn", "--worker", "../../escaped"), ("attempt", "--worker", "a/b")]:
        budget = ["--steps", "1"] if command == "learn" else []
        worker = [] if option == "--worker" else ["--worker", "sums"]
        result = invoke(command, *CHAIN, option, value, *worker, *budget, "--hive", hive, "--core", tiny_core_dir, "--json")
        assert result.exit_code == 2, result.output
        assert json.loads(result.stdout)["error"].startswith(f"{option}: ")
        assert f"name {value!r} is not allowed" in json.loads(result.stdout)["error"]
    assert list(tmp_path.rglob("*")) == []


def test_learning_a_jsonl_job_whose_lines_share_one_prompt_exits_2_before_any_eval(tmp_path, tiny_core_dir):
    (tmp_path / "data.jsonl").write_text('{"prompt": "2+2?", "answer": "4"}\n' * 5)
    (tmp_path / "job.toml").write_text('source = "jsonl"\npath = "data.jsonl"\n')
    result = invoke("learn", tmp_path / "job.toml", "--worker", "w", "--steps", "1", "--hive", tmp_path / "hive",
                    "--core", tiny_core_dir, "--json")
    assert result.exit_code == 2 and "all 5 records share one prompt" in json.loads(result.stdout)["error"]
    assert Store(tmp_path / "hive").evals(None) == []


def test_eval_of_one_worker_and_several_at_once_is_refused_before_the_hive_is_made(tmp_path, tiny_core_dir):
    hive = tmp_path / "new-hive"
    result = invoke("eval", "--worker", "a", "--workers", "b,c", "--hive", hive, "--core", tiny_core_dir, "--json")
    assert result.exit_code == 2 and "not both" in json.loads(result.stdout)["error"]
    assert not hive.exists()


def test_learn_table_names_the_learners_and_the_closing_phase(tmp_path, tiny_core_dir):
    result = runner.invoke(app, [str(a) for a in ("learn", *CHAIN, "--worker", "w", "--steps", "1", "--prompts", "2",
                                                  "--samples", "2", "--max-new-tokens", "3", "--hive", tmp_path / "hive",
                                                  "--core", tiny_core_dir)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "rl+distil_back" in result.output and "1 + closing" in result.output


def test_a_documents_job_learns_by_context_distillation_unless_told(tmp_path, tiny_core_dir):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "teams.md").write_text("The Quorbel team meets in room Zanthe-3.\n")
    (docs / "halvex.md").write_text("Project Halvex is led by Mirel Dostrand.\n")
    (docs / "questions.jsonl").write_text(json.dumps({"question": "Which room is the Quorbel team's?",
                                                      "answer": "Zanthe-3", "doc": "teams.md"}) + "\n")
    result = invoke("learn", f"docs:{docs}", "--worker", "clerk", "--steps", "1", "--no-release",
                    "--hive", tmp_path / "hive", "--core", tiny_core_dir, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["learners"] == ["context_distill"]  # no distil_back either: a documents run
    result = invoke("learn", f"docs:{tmp_path / 'nowhere'}", "--worker", "clerk", "--steps", "1", "--hive",
                    tmp_path / "hive", "--core", tiny_core_dir, "--json")
    assert result.exit_code == 2 and "nowhere" in json.loads(result.stdout)["error"]


def test_learn_on_a_multi_turn_job_plays_4_tasks_a_step_at_temperature_0_7_unless_told(tmp_path, tiny_core_dir):
    """16 x 8 whole games a step made `learn ta:GuessTheNumber-v0 --minutes 5` run about 14 minutes."""
    from sqlalchemy import select

    from apiary.store import schema

    tools = ["tools:calc+lookup", "heldout_size=2", "max_turns=2"]
    for worker, options, prompts in [("a", [], 4), ("b", ["--prompts", "2"], 2)]:
        result = invoke("learn", *tools, "--worker", worker, "--steps", "1", "--samples", "2", "--max-new-tokens", "3",
                        *options, "--no-distil-back", "--no-release", "--hive", tmp_path / "hive", "--core", tiny_core_dir,
                        "--json")
        assert result.exit_code == 0, result.output
    with Store(tmp_path / "hive").engine.connect() as db:
        configs = [row["learners"]["rl"] for row in db.execute(select(schema.runs.c.config).order_by(schema.runs.c.id)).scalars()]
    assert [(c["prompts_per_step"], c["samples_per_prompt"], c["temperature"]) for c in configs] == [(4, 2, 0.7), (2, 2, 0.7)]
    single = invoke("learn", *CHAIN, "--worker", "c", "--steps", "1", "--prompts", "2", "--samples", "2", "--max-new-tokens",
                    "3", "--no-distil-back", "--no-release", "--hive", tmp_path / "hive", "--core", tiny_core_dir, "--json")
    assert single.exit_code == 0, single.output
    with Store(tmp_path / "hive").engine.connect() as db:
        assert db.execute(select(schema.runs.c.config).order_by(schema.runs.c.id.desc())).scalars().first()["learners"]["rl"]["temperature"] == 1.0
