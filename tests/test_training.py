from pathlib import Path

import pytest

from apiary.hive.training import Budget, _combine, _step_figures, learn
from apiary.hive.worker import worker_on
from apiary.learners.common import LearnStep, StepStats
from apiary.learners.grpo import GRPOConfig
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.store.store import Store

CONFIG = GRPOConfig(prompts_per_step=2, samples_per_prompt=2, max_new_tokens=3, learning_rate=1e-2)
LORA = LoraSpec(rank=2, alpha=4)


def worker_w(store, job, core):
    """Worker "w" as the store holds it now (a handle is a snapshot: read again before each run)."""
    return worker_on(store, "w", job, core)


class Stop(Exception):
    pass


def stop_at(step_to_die: int):
    def hook(step, stats, model):
        if step == step_to_die:
            raise Stop()
    return hook


def test_learn_records_episodes_versions_and_provenance(tmp_path, tiny_core, chain_sum_job):
    store = Store(tmp_path)
    model, run = learn(store, worker_w(store, chain_sum_job, tiny_core), Budget(steps=4), CONFIG, LORA, checkpoint_every=2,
                       show_progress=False)
    adapters.detach(model)
    assert (run.steps, run.episodes, run.version) == (4, 16, 2)
    versions = store.adapter_versions("w")
    assert [v.version for v in versions] == [1, 2] and versions[-1].final
    assert (Path(versions[-1].path) / "adapter_model.safetensors").is_file()
    episodes = store.episodes("w")
    assert len(episodes) == 16 and {e.step for e in episodes} == {0, 1, 2, 3}
    assert store.trained_on("w", 2) == [e.id for e in episodes]
    assert store.unfinished_run("w") is None


def test_interrupted_run_resumes_from_last_checkpoint(tmp_path, tiny_core, chain_sum_job):
    store = Store(tmp_path)
    with pytest.raises(Stop):
        learn(store, worker_w(store, chain_sum_job, tiny_core), Budget(steps=10), CONFIG, LORA, checkpoint_every=2,
              show_progress=False, on_step=stop_at(3))
    interrupted = store.unfinished_run("w")
    assert interrupted is not None and interrupted.status == "interrupted"
    assert interrupted.step == 3 and (interrupted.budget.steps, interrupted.budget.from_step) == (10, 0)
    assert store.count_episodes("w") == 12  # all three steps' episodes were kept
    assert store.worker("w").latest_version == 1  # checkpoint at step 2
    model, run = learn(store, worker_w(store, chain_sum_job, tiny_core), Budget(steps=2), CONFIG, LORA, checkpoint_every=2,
                       show_progress=False)
    adapters.detach(model)
    assert run.resumed and run.run_id == interrupted.id
    (row,) = [r for r in store.table_rows("runs") if r["id"] == run.run_id]
    assert row["step"] == 4 and (row["budget"]["steps"], row["budget"]["from_step"]) == (2, 2)  # the budget it resumed with
    assert store.count_episodes("w") == 20
    steps = sorted(e.step for e in store.episodes("w"))
    assert steps.count(2) == 8  # step 2 ran twice: once before the kill, once after resuming
    assert store.adapter_versions("w")[-1].version == 2
    linked = set(store.trained_on("w", 2))
    orphan = [e for e in store.episodes("w") if e.id not in linked]
    assert len(orphan) == 4 and {e.step for e in orphan} == {2}  # recorded, but trained no saved adapter


def test_rl_needs_a_budget_and_learner_names_are_checked(tmp_path, tiny_core, chain_sum_job):
    store = Store(tmp_path)
    with pytest.raises(ValueError, match="budget"):
        learn(store, worker_w(store, chain_sum_job, tiny_core), Budget(), CONFIG, LORA, show_progress=False)
    with pytest.raises(ValueError, match="unknown learner"):
        learn(store, worker_w(store, chain_sum_job, tiny_core), Budget(steps=1), CONFIG, LORA, learners=["sft"], show_progress=False)
    assert store.count_episodes() == 0 and store.workers() == []


def _corrections(store, worker, n):
    """n attempts of the worker at chain_sum tasks, each corrected with its reference answer."""
    from apiary.store.feedback import make_feedback
    from apiary.store.records import Episode

    ids = store.add_episodes([Episode(job="chain_sum", task_id=str(i), messages=[{"role": "user", "content": f"{i} + 1 ="}],
                                      completion="?", score=0.0, answer=str(i + 1), worker=worker, origin="attempt")
                              for i in range(n)])
    return [f.id for f in store.add_feedback([make_feedback(i, correction=str(n)) for n, i in enumerate(ids, start=1)])]


def test_rl_and_corrections_in_one_run_record_what_each_used(tmp_path, tiny_core, chain_sum_job):
    from apiary.learners.corrections import CorrectionsConfig

    store = Store(tmp_path)
    store.ensure_worker("w", chain_sum_job.name, tiny_core.name, chain_sum_job.describe())
    feedback_ids = _corrections(store, "w", 4)
    model, run = learn(store, worker_w(store, chain_sum_job, tiny_core), Budget(steps=3), CONFIG, LORA, show_progress=False,
                       learners=["rl", "corrections"], configs={"corrections": CorrectionsConfig(batch_size=2, epochs=1)})
    adapters.detach(model)
    assert run.learners == ["rl", "corrections"] and run.feedback == 4 and run.steps == 3
    rl = [e for e in store.episodes("w") if e.origin == "rl"]
    assert len(rl) == 12 and {e.step for e in rl} == {0, 1, 2}
    assert sorted(store.feedback_learned("w", run.version)) == sorted(feedback_ids)
    assert {e.id for e in rl} <= set(store.trained_on("w", run.version))
    assert store.feedback("w", unconsumed=True) == []


def test_interrupted_feedback_run_resumes_its_queue(tmp_path, tiny_core, chain_sum_job):
    from apiary.learners.corrections import CorrectionsConfig

    store = Store(tmp_path)
    store.ensure_worker("w", chain_sum_job.name, tiny_core.name, chain_sum_job.describe())
    _corrections(store, "w", 6)
    configs = {"corrections": CorrectionsConfig(learning_rate=1e-2, batch_size=2, epochs=2)}  # 12 items in the queue: 6 steps
    with pytest.raises(Stop):
        learn(store, worker_w(store, chain_sum_job, tiny_core), Budget(), lora=LORA, checkpoint_every=2, show_progress=False,
              learners=["corrections"], configs=configs, on_step=stop_at(3))
    assert store.worker("w").latest_version == 1
    first = set(store.feedback_learned("w", 1))
    model, run = learn(store, worker_w(store, chain_sum_job, tiny_core), Budget(), lora=LORA, checkpoint_every=2,
                       show_progress=False, learners=["corrections"], configs=configs)
    adapters.detach(model)
    assert run.resumed and run.steps == 4  # steps 3..6 of the saved queue, not a new queue
    assert len(first | set(store.feedback_learned("w", run.version))) == 6


def test_a_steps_figures_keep_each_learners_own_and_show_the_anchors_kl():
    def step(extra):
        return LearnStep(stats=StepStats(reward_mean=0.5, trained_samples=1, generated_tokens=2, trained_tokens=2,
                                         generate_seconds=0.1, train_seconds=0.1, loss=0.25, extra=extra), episodes=[])

    combined = _combine([step({"anchor_kl": 0.0123, "invalid_rate": 0.0}), step({"verified": 3})])
    assert combined.extra == {"anchor_kl": 0.0123, "invalid_rate": 0.0, "verified": 3, "episodes": 0, "feedback": 0}
    assert _step_figures(4, combined) == "step 4  anchor KL 0.0123  loss 0.250"


class _Slow:
    """A learner whose steps report `seconds` each (its real work is the tiny model's)."""

    def __init__(self, learner, seconds: float):
        self.learner, self.seconds = learner, seconds

    def __getattr__(self, name):
        return getattr(self.learner, name)

    def learn(self, batch):
        result = self.learner.learn(batch)
        result.stats.generate_seconds, result.stats.train_seconds = self.seconds, 0.0
        return result


@pytest.mark.parametrize("learners, steps", [(["rl", "distil_back"], 3), (["rl"], 3)])
def test_a_minutes_budget_starts_no_step_that_would_not_fit(tmp_path, tiny_core, chain_sum_job, monkeypatch, learners, steps):
    """Steps of 100 s in 5 minutes: rl alone takes 3 (300 s); with distil_back 2, then the closing phase, since a
    third step and its phase (guessed at one step) would end at 400 s. Without the pace the phased run took 3 + 1."""
    from apiary.hive import training

    build = training.build_learners
    monkeypatch.setattr(training, "build_learners", lambda *a: [(n, _Slow(l, 100.0)) for n, l in build(*a)])
    store = Store(tmp_path)
    model, run = learn(store, worker_w(store, chain_sum_job, tiny_core), Budget(minutes=5), CONFIG, LORA,
                       show_progress=False, learners=learners)
    adapters.detach(model)
    assert run.steps == steps and run.stopped == "budget" and run.seconds <= 300
    assert run.closing_phase == ("distil_back" in learners)


def test_the_pace_counts_a_measured_phase_and_guesses_an_unmeasured_one_as_a_step():
    from apiary.hive.training import _Pace

    def step(seconds):
        return LearnStep(StepStats(reward_mean=0.0, loss=0.0, trained_samples=1, generated_tokens=1, trained_tokens=1,
                                   generate_seconds=seconds, train_seconds=0.0))

    pace = _Pace()
    pace.add([("rl", step(10.0))])
    pace.add([("rl", step(30.0))])
    assert (pace.needed(phases=False), pace.needed(phases=True)) == (20.0, 40.0)
    pace.add([("rl", step(20.0)), ("distil_back", step(90.0))])
    assert pace.needed(phases=True) == 110.0  # the phase's own time is not counted as a step's
    assert Budget(minutes=1).room(50.0, 10.0) and not Budget(minutes=1).room(50.0, 10.1) and Budget(steps=3).room(1e9, 1e9)
