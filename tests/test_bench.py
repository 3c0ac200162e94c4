"""The side-by-side suite (`apiary bench`): its quick form runs both sides of every comparison, and
the comparisons compute what they say. Nothing here is about speed."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from apiary.bench import continual_report
from apiary.bench.suite import PARTS, TITLES, BenchPlan, render, run
from apiary.bench.trl_race import compare, score_at
from apiary.cli import app


def _finite(*values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def test_quick_bench_runs_both_sides_of_every_part(tiny_core_dir, tmp_path):
    figures = run(BenchPlan(docs=tmp_path, core=str(tiny_core_dir), quick=True))
    assert json.loads((tmp_path / "peers.json").read_text()) == figures
    assert set(PARTS) <= set(figures) and "time_ratio_vs_trl" in figures

    trl = figures["trl"]
    for side in ("apiary", "trl"):
        assert trl[side]["steps"] == 2 and [p["step"] for p in trl[side]["curve"]] == [0, 1, 2]
        assert trl[side]["generated_tokens"] > 0
        assert _finite(trl[side]["wall_seconds"], trl[side]["generate_tokens_per_s"], trl[side]["train_tokens_per_s"])
    assert trl["versions"]["trl"] and trl["trl"]["trained_tokens"] > 0  # apiary skips groups without signal
    assert trl["apiary"]["curve"][0] == trl["trl"]["curve"][0]  # both sides start from the same core

    cont = figures["continual"]
    assert set(cont["consolidated"]) == {"distill", "full", "linear", "ties", "dare_linear"}
    for key in ("sequential", "sequential_full"):
        assert len(cont[key]["R"]) == 2 and all(len(row) == 2 for row in cont[key]["R"])
        assert cont[key]["flips"]["items"] > 0 and _finite(cont[key]["retention_kl"])
    assert [s["steps"] for s in cont["sequential_full"]["stages"]] == [1, 1]
    assert set(cont["headline"]["flips_right_to_wrong"]) >= {"hive: distill", "naive sequential LoRA",
                                                             "naive sequential full fine-tuning"}

    gen = figures["generation"]
    assert [r["batch"] for r in gen["rows"]] == [1, 4]
    assert all(_finite(*(r[k] for k in ("apiary_tokens_per_s", "hf_generate_tokens_per_s", "bound_tokens_per_s")))
               for r in gen["rows"])
    assert gen["matmul_flops_per_s"] > 0 and gen["memory_bytes_per_s"] > 0

    text = (tmp_path / "benchmarks.md").read_text()
    assert all(f"## {title}\n" in text for title in TITLES.values()) and "quick form" in text
    assert all((tmp_path / png).stat().st_size > 0 for png in ("trl_race.png", "continual.png", "generation.png"))

    (tmp_path / "benchmarks.md").unlink()  # --render rewrites every section from peers.json alone
    assert render(BenchPlan(docs=tmp_path, quick=True)) == figures
    assert all(f"## {title}\n" in (tmp_path / "benchmarks.md").read_text() for title in TITLES.values())


def test_a_part_run_alone_keeps_the_others(tiny_core_dir, tmp_path):
    earlier = {"time_ratio_vs_trl": 0.4, "level": 0.8}
    (tmp_path / "peers.json").write_text(json.dumps({"trl": earlier, "time_ratio_vs_trl": 0.4}))
    figures = run(BenchPlan(parts=("generation",), docs=tmp_path, core=str(tiny_core_dir), quick=True))
    assert figures["trl"] == earlier and figures["time_ratio_vs_trl"] == 0.4 and "generation" in figures
    assert "| <= 0.5 | 0.40 at 0.80 (met) |" in (tmp_path / "benchmarks.md").read_text()


def _curve(points):
    return {"curve": [{"step": i, "learn_seconds": s, "heldout": h} for i, (s, h) in enumerate(points)],
            "wall_seconds": points[-1][0]}


def test_compare_uses_the_target_when_both_reach_it_else_the_best_common_level():
    ours = _curve([(0, 0.2), (10, 0.5), (20, 0.85), (30, 0.9)])
    peer = _curve([(0, 0.2), (30, 0.6), (60, 0.8), (90, 0.82)])
    both = compare(ours, peer, 0.8, 100)
    assert both["level"] == 0.8 and both["target_reached_by_both"]
    assert both["seconds_to_level"] == {"apiary": 20, "trl": 60} and both["time_ratio_vs_trl"] == pytest.approx(1 / 3)
    assert both["heldout_at_equal_wall"] == {"apiary": 0.9, "trl": 0.6}  # at 30 s, the shorter run
    assert both["same_steps_wall_ratio"] == pytest.approx(30 / 90) and not both["level_within_noise"]
    missed = compare(ours, _curve([(0, 0.2), (40, 0.45), (80, 0.7)]), 0.8, 100)
    assert missed["level"] == 0.7 and not missed["target_reached_by_both"]
    assert missed["seconds_to_level"] == {"apiary": 20, "trl": 80}
    flat = compare(ours, _curve([(0, 0.2), (50, 0.2)]), 0.8, 100)
    assert flat["time_ratio_vs_trl"] is None  # nobody improved on the shared start: no ratio
    barely = compare(ours, _curve([(0, 0.2), (50, 0.23)]), 0.8, 100)  # 0.03 above 0.2 on 100 items: noise
    assert barely["level"] == 0.23 and barely["level_within_noise"] and barely["noise"] == pytest.approx(0.08)
    assert score_at(peer["curve"], 59) == 0.6


def test_headline_ratios():
    def cand(kept, flips):
        return {"jobs": [{"job": "a", "candidate": 0.5, "gain_kept": kept[0]}, {"job": "b", "candidate": 0.5, "gain_kept": kept[1]}],
                "retention_kl": 0.1, "flips": {"right_to_wrong": flips, "items": 100}, "passed": True, "reasons": []}

    seq = {"R": [[0.6, 0.1], [0.2, 0.7]], "transfer": {"acc": 0.45, "bwt": -0.4, "fwt": 0.0}, "retention_kl": 0.3,
           "flips": {"right_to_wrong": 20, "items": 100}}
    fig = {"jobs": ["a", "b"], "base": [0.1, 0.1], "worker_rows": [[0.6, 0.1], [0.1, 0.7]], "sequential": seq,
           "consolidated": {"distill": cand([0.9, 1.0], 2), "linear": cand([0.5, 0.7], 10), "ties": cand([0.8, None], 30)}}
    top = continual_report.headline(fig)
    assert top["flips_ratio_distill_vs_naive_lora"] == pytest.approx(0.1)
    assert top["best_merge"] == "ties" and top["distill_minus_best_merge"] == pytest.approx(0.95 - 0.8)
    assert top["meets_target"] == []  # no naive full fine-tuning in this run: nothing to beat
    full = seq | {"flips": {"right_to_wrong": 20, "items": 100}}  # ACC 0.45
    refused = cand([0.95, 0.95], 1) | {"passed": False, "reasons": ["too many flips"]}
    fig |= {"sequential_full": full, "consolidated": fig["consolidated"] | {"dare_linear": refused}}
    # distill: passed, kept 0.9 and 1.0, 2 < 20 flips, ACC 0.5 > 0.45; linear kept 0.5; ties flipped 30; dare refused
    assert continual_report.headline(fig)["meets_target"] == ["distill"]


def test_bench_cli_refuses_unknown_parts(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--parts", "trl,nope", "--docs", str(tmp_path), "--json"])
    assert result.exit_code == 2 and "unknown bench part" in result.stdout
    assert not (tmp_path / "peers.json").exists()


def test_the_continual_report_renders_a_run_without_the_naive_lora_baseline(tmp_path):
    """A run that measured naive sequential full fine-tuning but not naive LoRA (the target compares with the
    former) still gets its table, headline and plot; the missing baseline reads as not run."""
    cand = {"jobs": [{"job": "a", "candidate": 0.5, "gain_kept": 0.95}, {"job": "b", "candidate": 0.6, "gain_kept": 1.0}],
            "retention_kl": 0.01, "flips": {"right_to_wrong": 3, "items": 400}, "passed": True, "reasons": []}
    full = {"R": [[0.6, 0.1], [0.2, 0.7]], "transfer": {"acc": 0.45, "bwt": -0.4, "fwt": 0.0}, "retention_kl": 0.3,
            "flips": {"right_to_wrong": 20, "items": 400}, "learning_rate": 1e-5, "stages": []}
    worker = {"retention_kl": 0.02, "flips": {"right_to_wrong": 5, "items": 400}}
    fig = {"jobs": ["a", "b"], "job_specs": [["rg:a", []], ["rg:b", []]], "base": [0.1, 0.1],
           "worker_rows": [[0.6, 0.1], [0.1, 0.7]], "workers": {"x": worker, "y": worker}, "consolidated": {"distill": cand},
           "sequential_full": full, "budget_per_job": {"steps": 20}, "distill_steps": 16, "wall_seconds": 600,
           "machine": "test"}
    top = continual_report.headline(fig)
    assert top["meets_target"] == ["distill"] and top["flips_ratio_distill_vs_naive_lora"] is None
    text = continual_report.markdown(fig, "Continual", "apiary bench --parts continual", "c.png")
    assert "naive LoRA - (not run)" in text and "naive sequential full fine-tuning: forgetting matrix" in text
    assert "naive sequential LoRA:" not in text
    continual_report.plot(fig, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0


def test_the_continual_setup_names_its_seed_and_peers_and_refuses_unknown_peers(tmp_path):
    from apiary.bench.continual import ContinualSetup

    with pytest.raises(ValueError, match="unknown naive peer"):
        ContinualSetup(naive=["lora", "sgd"])
    plan = BenchPlan(parts=("continual",), docs=tmp_path,
                     continual=ContinualSetup(steps=20, naive=["full"], seed=1, methods=["full"]))
    assert plan.command("continual") == ("apiary bench --parts continual --steps 20 --distill-steps 40 --methods full "
                                         "--naive full --seed 1")
    quick = BenchPlan(parts=("continual",), docs=tmp_path, quick=True,
                      continual=ContinualSetup(naive=["full"], seed=1, methods=["linear"]))
    assert (quick.continual.naive, quick.continual.seed, quick.continual.methods) == (["full"], 1, ["linear"])
    result = CliRunner().invoke(app, ["bench", "--parts", "continual", "--naive", "sgd", "--docs", str(tmp_path), "--json"])
    assert result.exit_code == 2 and "unknown naive peer" in result.stdout


def test_the_frontier_learns_a_game_from_whole_episodes_and_arithmetic_as_the_demo(tmp_path, tiny_core_dir):
    """Issue 16's frontier on a multi-turn job: guess gets the long-horizon bench's batch and temperature, the
    arithmetic jobs keep the demo's, and the game's spec builds a multi-turn job."""
    pytest.importorskip("textarena")
    from apiary.bench.frontier import JOBS, METHODS
    from apiary.hive.hive import Hive
    from apiary.hive.recipes import DEMO

    method = METHODS["lr2e-4+distil_back"]
    game, arith = method.configs("guess"), method.configs("chain_sum")
    assert (game["rl"].prompts_per_step, game["rl"].samples_per_prompt, game["rl"].temperature) == (4, 8, 0.7)
    assert game["rl"].max_new_tokens is None and game["rl"].learning_rate == 2e-4 and "distil_back" in game
    assert (arith["rl"].prompts_per_step, arith["rl"].max_new_tokens) == (DEMO.rl.prompts_per_step, DEMO.rl.max_new_tokens)
    job = Hive(tmp_path / "hive", core=str(tiny_core_dir)).job(JOBS["guess"].spec, JOBS["guess"].overrides)
    assert job.multi_turn and len(job.source.heldout()) == 40


def test_a_frontier_point_with_a_minutes_budget_learns_for_minutes_and_is_named_apart():
    """`--minutes M` learns as `apiary learn --minutes M` does (no step budget) and its points sit beside the
    same method's step-budget points in docs/frontier.json rather than replacing them."""
    from types import SimpleNamespace

    from apiary.bench.frontier import METHODS, run_point

    class Recording:
        def learn(self, spec, worker, **kwargs):
            self.worker, self.kwargs = worker, kwargs
            return SimpleNamespace(gate=None, steps=3, before=0.2, after=0.5, learn_seconds=58.0)

    hive = Recording()
    point = run_point(hive, "chain_sum", METHODS["lr2e-4+distil_back"], 1, 20, minutes=1.0)
    assert (hive.kwargs["minutes"], hive.kwargs["steps"]) == (1.0, None) and hive.worker.endswith("-s1-1min")
    assert point["method"] == "lr2e-4+distil_back (1 min)" and point["steps"] == 3 and not point["passed"]
    point = run_point(hive, "chain_sum", METHODS["lr2e-4+distil_back"], 1, 20)
    assert (hive.kwargs["minutes"], hive.kwargs["steps"]) == (None, 20) and point["method"] == "lr2e-4+distil_back"
