"""One rollout path and one learner protocol: single-turn jobs are one-turn episodes of the same player,
every learner is built the same way, and each learner's learning rate is its own."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from sqlalchemy import select

from apiary.evals.heldout import evaluate
from apiary.hive.mix import LEARNERS, build_learners, configs_with, run_configs
from apiary.hive.training import Budget, learn
from apiary.hive.worker import worker_on
from apiary.jobs.base import Job, OneReply
from apiary.jobs.function import FunctionSource
from apiary.jobs.scoring import Scorer
from apiary.jobs.spec import load_job
from apiary.learners.common import Learner
from apiary.learners.corrections import CorrectionsConfig
from apiary.learners.grpo import GRPOConfig
from apiary.learners.play import play, transcript_episode
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.models.core import load_core
from apiary.models.generate import SamplingParams, generate, prompt_ids
from apiary.store.feedback import make_feedback
from apiary.store import schema
from apiary.store.records import Episode
from apiary.store.store import Store

GREEDY = SamplingParams(max_new_tokens=6, temperature=0.0)


def parity_job(heldout_scorer: Scorer | None = None) -> Job:
    """Reward 1 for a reply of even length: a signal a random tiny model's samples always vary on."""
    return Job("parity", FunctionSource(lambda i: (f"say something #{i}", "x"), heldout_size=3),
               Scorer("even", lambda c, a: float(len(c) % 2 == 0)), instruction="Be brief.", max_tokens=6,
               heldout_scorer=heldout_scorer)


def test_a_single_turn_job_is_played_as_one_turn_episodes_identical_to_plain_generation(tiny_core):
    job, tok = parity_job(), tiny_core.tokenizer
    tasks = job.source.train(0, 3)
    transcripts = play(tiny_core.model, tok, job, tasks, 2, GREEDY, tiny_core.stop_token_ids)
    direct = generate(tiny_core.model, [prompt_ids(tok, job.messages(t)) for t in tasks], 2, GREEDY,
                      tiny_core.stop_token_ids, tok.pad_token_id)
    assert [t.ids for t in transcripts] == direct
    assert all(t.turns == 1 and t.done and t.model_mask == [1] * len(t.ids) for t in transcripts)
    for t, ids in zip(transcripts, direct):
        text = tok.decode(ids, skip_special_tokens=True)
        assert t.completion == text and t.score == job.score(t.task, text)
        assert t.prompt_ids == prompt_ids(tok, job.messages(t.task))


def test_single_turn_episodes_are_stored_as_before_prompt_reply_score_and_no_info(tiny_core):
    job = parity_job()
    task = job.source.train(0, 1)[0]
    transcript = play(tiny_core.model, tiny_core.tokenizer, job, [task], 1, GREEDY, tiny_core.stop_token_ids)[0]
    episode = transcript_episode(job, transcript)
    today = Episode(job=job.name, task_id=task.id, messages=job.messages(task), completion=transcript.completion,
                    score=job.score(task, transcript.completion), answer=task.answer)
    assert episode.model_dump(exclude={"created_at"}) == today.model_dump(exclude={"created_at"})
    assert episode.info is None


def test_one_reply_environment_scores_with_the_training_and_the_heldout_scorer():
    job = parity_job(heldout_scorer=Scorer("never", lambda c, a: 0.25))
    env = job.episode(job.source.train(0, 1)[0])
    assert isinstance(env, OneReply) and env.start() == "say something #0"
    turn = env.step("ab")
    assert turn.done and turn.score == 1.0 and turn.success and turn.heldout_score == 0.25


def test_heldout_eval_of_a_single_turn_job_keeps_its_details_and_uses_the_heldout_scorer(tiny_core):
    job, tok = parity_job(heldout_scorer=Scorer("half", lambda c, a: 0.5 if len(c) % 2 else 1.0)), tiny_core.tokenizer
    tasks = job.source.heldout()
    result = evaluate(tiny_core.model, tok, job, tiny_core.stop_token_ids)
    replies = [tok.decode(ids, skip_special_tokens=True) for ids in generate(
        tiny_core.model, [prompt_ids(tok, job.messages(t)) for t in tasks], 1,
        SamplingParams(max_new_tokens=job.max_tokens, temperature=0.0), tiny_core.stop_token_ids, tok.pad_token_id)]
    assert set(result.details) == {"task_ids", "scores", "completions"}
    assert result.details["completions"] == replies and result.details["task_ids"] == [t.id for t in tasks]
    assert result.details["scores"] == [job.heldout_score(t, r) for t, r in zip(tasks, replies)]
    assert result.score == pytest.approx(sum(result.details["scores"]) / len(tasks))


def documents_job(folder):
    """A documents job of one document, for the learners that learn documents."""
    folder.mkdir()
    (folder / "a.md").write_text("Room Zanthe-3 is on floor 2.")
    (folder / "questions.jsonl").write_text(json.dumps({"question": "Which floor?", "answer": "2", "doc": "a.md"}) + "\n")
    return load_job(f"docs:{folder}")


def test_every_learner_follows_the_protocol_and_is_built_the_same_way(tiny_core, tmp_path):
    shape = None
    for name, (cls, config_cls) in LEARNERS.items():
        params = list(inspect.signature(cls.__init__).parameters)
        shape = shape or params
        assert params == shape == ["self", "model", "tokenizer", "job", "config", "stop_ids", "generator"], name
        # 1e-3: the rate every learner used before it had its own; self_distill came later, and rl moved to 2e-4 with
        # the anchor (issue 16's frontier, docs/benchmarks.md), then to 5e-4 with distil_back's phases (the frontier's
        # 5-minute points); distil_back stays at 2e-4 (what served corrections were measured with); context_distill and
        # self_study (documents) between the two, not yet measured; corrections moved to 5e-4 with distil_back (served
        # corrections, two seeds released); recall at 5e-4 (the documents bench: 2e-4 learned nothing in 5 minutes)
        default = {"self_distill": 2e-4, "rl": 5e-4, "distil_back": 2e-4, "context_distill": 5e-4,
                   "self_study": 5e-4, "corrections": 5e-4, "recall": 5e-4}.get(name, 1e-3)
        assert config_cls().learning_rate == default, name
    job = parity_job()
    job.solve = lambda question: None  # practice needs a check
    documents = {"context_distill", "self_study", "doc_pretrain", "recall"}  # they learn a documents job only
    model = adapters.attach(tiny_core.model, LoraSpec(rank=2, alpha=4))
    try:
        rates = {name: 1e-3 * (i + 1) for i, name in enumerate(LEARNERS)}
        for names, on in (([n for n in LEARNERS if n not in documents], job),
                          (sorted(documents), documents_job(tmp_path / "docs"))):
            configs = configs_with(names, GRPOConfig(), learning_rates={n: rates[n] for n in names})
            for name, learner in build_learners(configs, model, tiny_core, on, torch.Generator()):
                assert isinstance(learner, Learner) and learner.name == name and learner.config is configs[name]
                assert learner.optimizer.param_groups[0]["lr"] == rates[name]
    finally:
        adapters.detach(model)


def test_bad_learner_settings_are_refused_clearly():
    with pytest.raises(ValueError, match="learning rate must be a number >= 0"):
        CorrectionsConfig(learning_rate=-1e-3)
    with pytest.raises(ValueError, match="rl: the learning rate"):
        GRPOConfig(learning_rate=-1.0)
    with pytest.raises(ValueError, match="unknown learner"):
        configs_with(["rl"], GRPOConfig(), learning_rates={"sft": 1e-4})
    with pytest.raises(ValueError, match="does not use"):
        configs_with(["rl"], GRPOConfig(), learning_rates={"corrections": 1e-4})
    with pytest.raises(ValueError, match="does not use"):
        run_configs(["rl"], {"corrections": CorrectionsConfig()})
    with pytest.raises(ValueError, match="takes a CorrectionsConfig"):
        run_configs(["corrections"], {"corrections": GRPOConfig()})


def test_command_line_settings_give_one_rate_to_every_learner_unless_one_is_named():
    configs = configs_with(["rl", "corrections", "practice"], GRPOConfig(prompts_per_step=3), learning_rate=5e-4,
                           learning_rates={"corrections": 1e-4}, batch_size=2, epochs=1)
    assert [c.learning_rate for c in configs.values()] == [5e-4, 1e-4, 5e-4]
    assert configs["rl"].prompts_per_step == 3 and configs["corrections"].epochs == 1
    assert configs["corrections"].batch_size == configs["practice"].batch_size == 2


def _rl_run(tmp_path, core_dir, learners, configs=None):
    """Two RL steps (plus whatever else `learners` says) from a seeded fresh adapter on a freshly loaded core
    (sampling merges the adapter into the core and back, which moves the core's weights by rounding errors);
    the final adapter's weights."""
    tiny_core = load_core(core_dir)
    store = Store(tmp_path)
    job = parity_job()
    store.ensure_worker("w", job.name, tiny_core.name, job.describe())
    ids = store.add_episodes([Episode(job=job.name, task_id=str(i), messages=[{"role": "user", "content": f"q{i}"}],
                                      completion="?", score=0.0, answer="a", worker="w", origin="attempt") for i in range(4)])
    store.add_feedback([make_feedback(i, correction="a long correction") for i in ids])
    torch.manual_seed(0)
    model, run = learn(store, worker_on(store, "w", job, tiny_core), Budget(steps=2), GRPOConfig(prompts_per_step=2, samples_per_prompt=4,
                                                                                learning_rate=5e-2),
                       LoraSpec(rank=2, alpha=4), learners=learners, configs=configs, show_progress=False)
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    adapters.detach(model)
    return weights, run, store


def test_each_learner_learns_at_its_own_rate_in_a_shared_run(tmp_path, tiny_core_dir):
    """Corrections at learning rate 0 change nothing, not even through RL's optimizer, while RL in the same
    run moves the adapter exactly as it does alone."""
    alone, _, _ = _rl_run(tmp_path / "alone", tiny_core_dir, ["rl"])
    mixed, run, store = _rl_run(tmp_path / "mixed", tiny_core_dir, ["rl", "corrections"],
                                {"corrections": CorrectionsConfig(learning_rate=0.0, batch_size=2)})
    assert run.feedback == 4 and any(p.abs().sum() > 0 for p in alone.values())  # rl moved B away from 0
    assert all(torch.equal(alone[n], mixed[n]) for n in alone)
    with store.engine.connect() as db:
        stored = db.execute(select(schema.runs.c.config).where(schema.runs.c.id == run.run_id)).scalar_one()
    assert stored["learners"]["corrections"]["learning_rate"] == 0.0 and stored["learners"]["rl"]["learning_rate"] == 5e-2
    moved, _, _ = _rl_run(tmp_path / "moved", tiny_core_dir, ["rl", "corrections"],
                          {"corrections": CorrectionsConfig(learning_rate=5e-2, batch_size=2)})
    assert any(not torch.equal(alone[n], moved[n]) for n in alone)


def test_cli_learning_rate_options_are_checked_before_any_learning(tmp_path, tiny_core_dir):
    from typer.testing import CliRunner

    from apiary.cli import app

    def error(*lr: str) -> str:
        args = ["learn", "rg:chain_sum", "--worker", "w", "--steps", "1", "--learners", "rl,corrections", "--hive",
                str(tmp_path), "--core", str(tiny_core_dir), "--json"]
        result = CliRunner().invoke(app, args + [x for value in lr for x in ("--lr", value)])
        assert result.exit_code == 2, result.output
        return json.loads(result.stdout)["error"]

    assert "learning rate must be a number >= 0" in error("-1")
    assert "CorrectionsConfig: the learning rate must be a number >= 0" in error("1e-3", "corrections=-1")
    assert "give a number" in error("corrections=fast")
    assert "unknown learner" in error("sft=1e-4")
    assert "does not use" in error("practice=1e-4")
