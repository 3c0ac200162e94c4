"""The learning-step memory benchmark's quick form: each budget in its own process, the same episodes for each."""

import json

from apiary.bench.step_memory import TITLE, main

CHAIN = ["rg:chain_sum", "min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"]


def test_step_memory_quick_form_measures_each_budget_on_the_same_episodes(tiny_core_dir, tmp_path):
    results = main(["--quick", "--core", str(tiny_core_dir), "--docs", str(tmp_path), "--budgets", "32,4096", "--job", *CHAIN])
    assert [r["budget"] for r in results] == [32, 4096]
    rows = [r["steps"][0] for r in results]
    assert all(row["episodes"] == 4 and row["rollout_peak_mb"] > 0 and row["update_peak_mb"] > 0 for row in rows)
    assert rows[0]["longest"] == rows[1]["longest"] and rows[0]["trained"] == rows[1]["trained"]  # same seed, same episodes
    assert json.loads((tmp_path / "step_memory.json").read_text()) == results
    text = (tmp_path / "benchmarks.md").read_text()
    assert f"## {TITLE}\n" in text and "| 32 | 0 | 4 |" in text
