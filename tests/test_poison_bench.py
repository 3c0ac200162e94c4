"""The poisoned-feedback benchmark's quick form runs all three conditions and holds the poisoner back."""

from apiary.bench.poison import CONDITIONS, POISONER, TITLE, Plan, run


def test_quick_poison_bench_runs_every_condition_and_flags_the_poisoner(tiny_core_dir, tmp_path):
    result = run(Plan.quick_form(str(tiny_core_dir), tmp_path))
    rows = result["seeds"][0]["conditions"]
    assert list(rows) == list(CONDITIONS)
    assert rows["clean"]["poisoned"] == 0 and rows["flagging on"]["poisoned"] == rows["flagging off"]["poisoned"] > 0
    assert rows["flagging on"]["held_back"] == [POISONER] and rows["flagging off"]["held_back"] == []
    assert rows["flagging on"]["learned"] < rows["flagging off"]["learned"]  # mallory's feedback was left out
    assert set(result["targets"]) == {"never_below_live", "kept_70_percent", "clean_gained"}
    text = (tmp_path / "benchmarks.md").read_text()
    assert f"## {TITLE}\n" in text and "Quick form" in text and (tmp_path / "poison.json").is_file()
