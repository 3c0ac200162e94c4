"""The demo's whole loop on the tiny model: two workers learn, the hive consolidates what passed, the gate decides."""

import json

from apiary import ConsolidateConfig, DistillConfig, Hive
from apiary.cli.shell import _consolidation_lines
from apiary.hive.demo import DemoResult, consolidation_sources, nothing_to_consolidate, run_demo
from apiary.hive.recipes import DEMO, Recipe
from apiary.learners.grpo import GRPOConfig
from apiary.store.records import Worker

# One step of 2 prompts x 2 samples per worker at a learning rate so small that each new version is the core to
# float precision, whatever the samples earn on this machine's CPU, so it passes the default worker gate; two
# distillation steps.
TINY = Recipe(name="tiny", workers=DEMO.workers, minutes=0.001,
              rl=GRPOConfig(prompts_per_step=2, samples_per_prompt=2, max_new_tokens=3, learning_rate=1e-9))
QUICK = ConsolidateConfig(distill=DistillConfig(steps=2, prompts_per_job=2, anchor_prompts=2, max_new_tokens=3,
                                                anchor_new_tokens=3, rank=4))


def test_the_demo_learns_two_workers_then_consolidates_them_and_reports_the_gate_decision(tmp_path, tiny_core_dir,
                                                                                         monkeypatch, capsys):
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    hive = Hive(tmp_path / "hive", core=str(tiny_core_dir))
    result = run_demo(hive, TINY, consolidation=QUICK, show_progress=False)
    assert [r.worker for r in result.workers] == ["arith", "times"]
    for r in result.workers:
        # a 0.06 s budget is one step or a few: a run that reaches its 5-step checkpoint saves two versions
        assert r.gate is not None and r.gate.passed and r.live_version == r.gate.version >= 1, (r.worker, r.gate)
    core = result.consolidation
    assert result.skipped is None and core is not None
    assert {(s["worker"], s["adapter_version"]) for s in core.sources} == {(r.worker, r.live_version) for r in result.workers}
    assert {j.job for j in core.jobs} == {"chain_sum", "products"}
    (decision,) = hive.store.decisions(f"core:{core.version}")
    assert decision.passed == core.passed and decision.reasons == core.reasons and core.passed == (not core.reasons)
    assert core.flip_test is not None and core.gate["max_retention_kl"] == 0.05  # the default gate, with its numbers
    assert core.released == core.passed and hive.store.current_core() == (core.version if core.passed else 0)
    _consolidation_lines(core)  # the table and the decision, as `apiary demo` prints them
    assert f"core v{core.version}" in capsys.readouterr().err
    shown = json.loads(result.model_dump_json())  # what `apiary demo --json` prints
    assert shown["consolidation"]["version"] == core.version and len(shown["workers"]) == 2
    assert DemoResult.model_validate(shown).consolidation.passed == core.passed


def test_the_demo_consolidates_only_workers_whose_version_passed_and_says_why_when_none_did():
    refused = Worker(name="arith", job="chain_sum", core="bundled", live_version=0, latest_version=1, has_release=True)
    passed = Worker(name="times", job="products", core="bundled", live_version=2, latest_version=3, has_release=True)
    older = Worker(name="gcd", job="gcd", core="bundled", core_version=0, live_version=1, latest_version=1)
    assert consolidation_sources([refused, passed], current=0) == ["times"]
    assert consolidation_sources([refused, older], current=1) == []
    why = nothing_to_consolidate([refused.model_copy(update={"core_version": 1}), older], current=1)
    assert why.startswith("nothing to consolidate") and "arith: no version passed its gate" in why
    assert "gcd sits on core v0" in why and "core v1 stays current" in why
