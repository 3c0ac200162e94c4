"""Consolidation end to end on the tiny model: candidates, lineage, the gate, releases, new workers."""

from pathlib import Path

import pytest
import torch

from apiary import ConsolidateConfig, CorrectionsConfig, DistillConfig, GateConfig, Hive
from apiary.learners.common import reverse_kl
from apiary.learners.grpo import GRPOConfig
from apiary.store.records import Episode

CONFIG = GRPOConfig(prompts_per_step=2, samples_per_prompt=2, max_new_tokens=3, learning_rate=1e-2)
QUICK = DistillConfig(steps=2, prompts_per_job=2, anchor_prompts=2, max_new_tokens=3, anchor_new_tokens=3, rank=4)
FEEDBACK = {"corrections": CorrectionsConfig(epochs=2, batch_size=4)}
ONE_DIGIT = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"]


@pytest.fixture
def hive(tmp_path, tiny_core_dir, monkeypatch):
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    h = Hive(tmp_path / "hive", core=str(tiny_core_dir))
    ungated = {"release": "ungated", "show_progress": False}  # the workers go live by override: this file tests the core gate
    for worker, spec, overrides in [("arith", "rg:chain_sum", ONE_DIGIT), ("times", "rg:products", ONE_DIGIT)]:
        h.learn(spec, worker, steps=1, config=CONFIG, overrides=overrides, **ungated)  # random model: no reward
        h.attempt(spec, worker, n=4, overrides=overrides)
        h.simulate_feedback(worker, "correction", n=4)
        h.learn(spec, worker, learners=["corrections"], configs=FEEDBACK, overrides=overrides, **ungated)
    return h


def test_reverse_kl_is_zero_for_equal_distributions_and_positive_otherwise():
    logits = torch.randn(5, 11)
    assert float(reverse_kl(logits, logits)) == pytest.approx(0.0, abs=1e-6)
    assert float(reverse_kl(logits, torch.randn(5, 11))) > 0.0


@pytest.mark.parametrize("method", ["distill", "ties"])
def test_consolidation_stores_a_version_with_complete_lineage_and_releases_it(hive, method):
    config = ConsolidateConfig(method=method, distill=QUICK, gate=GateConfig(tolerance=1.0, max_retention_kl=10.0))
    result = hive.consolidate(config=config, show_progress=False)
    assert result.passed and result.released and result.current_core == result.version == 1
    assert {s.job for s in result.jobs} == {"chain_sum", "products"}
    assert all(s.worker is not None and s.worker_score is not None for s in result.jobs)
    (version,) = hive.store.core_versions()
    assert version.method == method and version.parent == 0
    assert (Path(version.path) / "adapter_model.safetensors").is_file()
    assert {(s["worker"], s["adapter_version"]) for s in version.sources} == {("arith", 2), ("times", 2)}
    assert all(s["episodes"] == 4 and s["feedback"] == 4 for s in version.sources)  # 1 RL step of 2 x 2; 4 corrections
    evals = {e.id: e for e in hive.store.evals()}
    for ids in version.details["eval_ids"].values():
        assert evals[ids["candidate"]].core_version == 1 and evals[ids["released"]].core_version == 0
    (decision,) = hive.store.decisions("core:1")
    assert decision.passed and decision.evidence["retention_kl"] == pytest.approx(result.retention_kl)


def test_a_refused_candidate_is_stored_but_not_released(hive):
    config = ConsolidateConfig(method="linear", gate=GateConfig(max_retention_kl=0.0))  # any change to the core is refused
    result = hive.consolidate(config=config, show_progress=False)
    assert not result.passed and not result.released and result.current_core == 0
    assert result.reasons and "retention KL" in result.reasons[0]
    assert hive.status()["core_versions"][0]["passed"] is False
    with pytest.raises(ValueError, match="never released"):
        hive.rollback(1)


def test_new_workers_start_from_the_released_core_and_rollback_restores_the_old_one(hive):
    config = ConsolidateConfig(method="linear", gate=GateConfig(tolerance=1.0, max_retention_kl=10.0))
    assert hive.consolidate(config=config, show_progress=False).released
    base, v1 = hive.core_at(0).model, hive.core_at(1).model
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(base.state_dict()[name], v1.state_dict()[name])
    assert hive.core.version == 1
    hive.learn("rg:chain_sum", "late", steps=1, config=CONFIG, overrides=ONE_DIGIT, show_progress=False)
    assert hive.store.worker("late").core_version == 1 and hive.store.worker("arith").core_version == 0
    with pytest.raises(ValueError, match="nothing to consolidate|sits on"):
        hive.consolidate(config=config, workers=["arith"], show_progress=False)
    assert hive.rollback(0) == 0 and hive.core.version == 0
    assert [r["reason"] for r in hive.status()["releases"]] == ["release", "rollback"]


def test_a_worker_that_trained_on_a_heldout_item_is_refused_for_contamination(hive):
    job = hive.job("rg:chain_sum", ONE_DIGIT)
    leaked = job.source.heldout()[0]
    (episode_id,) = hive.store.add_episodes([Episode(job=job.name, task_id=leaked.id, messages=job.messages(leaked),
                                                     completion="7", score=0.0, answer=leaked.answer, origin="attempt",
                                                     worker="arith", adapter_version=2)])
    hive.feedback(episode_id, correction=leaked.answer)
    hive.learn(job, "arith", learners=["corrections"], configs=FEEDBACK, show_progress=False, release="ungated")
    config = ConsolidateConfig(method="linear", gate=GateConfig(tolerance=1.0, max_retention_kl=10.0))
    result = hive.consolidate(config=config, show_progress=False)
    assert not result.passed and result.contamination == 1
    assert result.reasons == ["training data contains 1 held-out item(s)"]
    example = hive.store.core_versions()[0].details["contamination"][0]
    assert example["heldout_set"] == "chain_sum" and example["overlap"] == 1.0


def test_full_consolidation_stores_a_weight_delta_that_loads_back_as_the_measured_candidate(hive, tiny_core_dir):
    config = ConsolidateConfig(method="full", distill=QUICK, full_learning_rate=1e-3,
                               gate=GateConfig(tolerance=1.0, max_retention_kl=10.0))
    base_before = {k: v.clone() for k, v in hive.core_at(0).model.state_dict().items()}
    result = hive.consolidate(config=config, show_progress=False)
    assert result.released and result.current_core == 1
    (version,) = hive.store.core_versions()
    assert version.method == "full" and version.details["weights"] == "full"
    assert (Path(version.path) / "core_delta.safetensors").is_file()
    assert not (Path(version.path) / "adapter_model.safetensors").exists()
    base_after = hive.core_at(0).model.state_dict()  # the core the workers were trained on is given back as it was
    assert base_after.keys() == base_before.keys() and all(torch.equal(base_after[k], base_before[k]) for k in base_before)
    fresh = Hive(hive.store.root, core=str(tiny_core_dir))  # loads core v1 from its stored delta
    v1 = fresh.core_at(1).model.state_dict()
    changed = [k for k in base_before if not torch.equal(v1[k], base_before[k])]
    assert len(changed) > len(base_before) // 2  # every weight trained, not an adapter's few
    candidate = {e.id: e for e in fresh.store.evals()}
    scores = {j: candidate[ids["candidate"]].score for j, ids in version.details["eval_ids"].items()}
    again = {s.job: fresh.evaluator.core(fresh.job(spec, ONE_DIGIT), 1, reuse=False).score
             for s, spec in zip(sorted(result.jobs, key=lambda s: s.job), ["rg:chain_sum", "rg:products"])}
    assert again == pytest.approx(scores)  # the stored version scores what the gate saw
    fresh.learn("rg:chain_sum", "late", steps=1, config=CONFIG, overrides=ONE_DIGIT, show_progress=False)
    assert fresh.store.worker("late").core_version == 1


def test_a_core_delta_that_does_not_fit_the_core_is_refused(tmp_path, tiny_core_dir):
    from apiary.models import delta
    from apiary.models.core import load_core, with_core_updates

    core = load_core(tiny_core_dir)
    change = delta.delta_of(core.model, core.model)
    change.pop(next(iter(change)))
    delta.save(change, tmp_path)
    with pytest.raises(ValueError, match="does not fit this core"):
        with_core_updates(load_core(tiny_core_dir), [tmp_path], 1)


def test_a_merge_of_workers_never_evaluated_keeps_its_adapter_while_the_workers_are_measured(tmp_path, tiny_core_dir,
                                                                                            random_adapter, monkeypatch):
    """Regression: the source workers' held-out evals (when none was stored yet) attached and unloaded their adapters
    on the core's modules after the candidate was built on those same modules, stripping the candidate's merged
    adapter: later jobs were scored on the bare core and the retention check failed ("No adapter layers found")."""
    from apiary.store.records import AdapterVersion

    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    h = Hive(tmp_path / "hive", core=str(tiny_core_dir))
    for seed, (worker, spec) in enumerate([("arith", "rg:chain_sum"), ("times", "rg:products")]):
        h.deploy(spec, worker, overrides=[*ONE_DIGIT, "heldout_size=4"])
        random_adapter(h.store.adapter_dir(worker, 1), seed)
        h.store.add_adapter_version(AdapterVersion(worker=worker, version=1, parent=0, step=1, final=True,
                                                   path=str(h.store.adapter_dir(worker, 1))), [])
        h.store.release_worker(worker, 1, "ungated")
    config = ConsolidateConfig(method="linear", release=False, gate=GateConfig(tolerance=1.0, max_retention_kl=10.0))
    result = h.consolidate(config=config, show_progress=False)
    assert result.version == 1 and all(s.worker_score is not None for s in result.jobs)
    fresh = Hive(tmp_path / "hive", core=str(tiny_core_dir))  # core v1 loaded from what was stored, measured again
    for score in result.jobs:
        job = fresh.job(f"rg:{score.job}", [*ONE_DIGIT, "heldout_size=4"])
        assert fresh.evaluator.core(job, 1, reuse=False).score == pytest.approx(score.candidate)
