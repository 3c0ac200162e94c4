"""The kept-cache benchmark's quick form: both passes play the same games, the kept one reads fewer tokens."""

import json

from apiary.bench.turn_cache import TITLE, main


def test_turn_cache_quick_form_plays_the_same_games_reading_fewer_tokens(tiny_core_dir, tmp_path):
    [result] = main(["--quick", "--core", str(tiny_core_dir), "--docs", str(tmp_path)])
    whole, kept = result["whole"], result["kept"]
    assert result["same_last_reply"] == result["games"] == 4 and whole["score"] == kept["score"]
    assert 0 < kept["tokens_read"] < whole["tokens_read"] and whole["peak_mb"] > 0 and kept["peak_mb"] > 0
    assert json.loads((tmp_path / "turn_cache.json").read_text()) == [result]
    assert f"## {TITLE}\n" in (tmp_path / "benchmarks.md").read_text()
