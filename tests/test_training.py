from pathlib import Path

import pytest

from apiary.hive.training import Budget, learn
from apiary.learners.grpo import GRPOConfig
from apiary.models import adapters
from apiary.models.adapters import LoraSpec
from apiary.store.store import Store

CONFIG = GRPOConfig(prompts_per_step=2, samples_per_prompt=2, max_new_tokens=3, learning_rate=1e-2)
LORA = LoraSpec(rank=2, alpha=4)


class Stop(Exception):
    pass


def stop_at(step_to_die: int):
    def hook(step, stats, model):
        if step == step_to_die:
            raise Stop()
    return hook


def test_learn_records_episodes_versions_and_provenance(tmp_path, tiny_core, chain_sum_job):
    store = Store(tmp_path)
    model, run = learn(store, tiny_core, chain_sum_job, "w", Budget(steps=4), CONFIG, LORA, checkpoint_every=2,
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
        learn(store, tiny_core, chain_sum_job, "w", Budget(steps=10), CONFIG, LORA, checkpoint_every=2,
              show_progress=False, on_step=stop_at(3))
    interrupted = store.unfinished_run("w")
    assert interrupted is not None and interrupted.status == "interrupted"
    assert store.count_episodes("w") == 12  # all three steps' episodes were kept
    assert store.latest_adapter("w").version == 1  # checkpoint at step 2
    model, run = learn(store, tiny_core, chain_sum_job, "w", Budget(steps=2), CONFIG, LORA, checkpoint_every=2,
                       show_progress=False)
    adapters.detach(model)
    assert run.resumed and run.run_id == interrupted.id
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
        learn(store, tiny_core, chain_sum_job, "w", Budget(), CONFIG, LORA, show_progress=False)
    with pytest.raises(ValueError, match="unknown learner"):
        learn(store, tiny_core, chain_sum_job, "w", Budget(steps=1), CONFIG, LORA, learners=["sft"], show_progress=False)
    assert store.count_episodes() == 0 and store.workers() == []
