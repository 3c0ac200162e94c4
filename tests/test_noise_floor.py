"""The noise floor: random adapters scaled to a KL, flips of changes that learn nothing, the gate's table."""

import pytest

from apiary.evals import noise_floor, retention
from apiary.evals.noise_floor import FloorPoint
from apiary.models import adapters

SUITE = [{"question": f"q{i}", "answer": "a"} for i in range(200)]


def test_a_random_adapter_is_scaled_to_a_target_kl_by_bisection(tmp_path, tiny_core):
    replies = retention.references(tiny_core, tmp_path)[:3]  # a few prompts keep it fast
    adapter = noise_floor.random_adapter(tiny_core.model, seed=0)
    try:
        adapter.set_scale(0.0)  # B = 0: the no-op adapter, the base itself
        assert retention.retention_kl(adapter.model, None, tiny_core.tokenizer, replies) == pytest.approx(0.0, abs=1e-6)
        scale, kl = noise_floor.scale_to_kl(adapter, tiny_core.tokenizer, replies, target=0.001)
        assert scale > 0 and kl == pytest.approx(0.001, rel=0.15)
        bigger, kl_bigger = noise_floor.scale_to_kl(adapter, tiny_core.tokenizer, replies, target=0.002)
        assert bigger > scale and kl_bigger == pytest.approx(0.002, rel=0.15)
    finally:
        adapters.detach(adapter.model)


def test_the_same_seed_draws_the_same_adapter(tiny_core):
    draws = []
    for _ in range(2):
        adapter = noise_floor.random_adapter(tiny_core.model, seed=3)
        draws.append({k: v.clone() for k, v in adapter.directions.items()})
        adapters.detach(adapter.model)
    assert draws[0].keys() == draws[1].keys() and all((draws[0][k] == draws[1][k]).all() for k in draws[0])


def test_a_change_that_learns_nothing_flips_nothing_on_the_tiny_core(tiny_core):
    suite = retention.items()[:10]
    base = retention.item_scores(tiny_core.model, tiny_core.tokenizer, tiny_core.stop_token_ids, suite)
    point = noise_floor.batch_floor(tiny_core, suite, base, seed=0, name="s")
    assert point.change == "batch" and point.items == 10 and point.right_to_wrong == point.wrong_to_right == 0


def test_expected_flips_interpolate_the_measured_floor_for_its_suite_only():
    table = {"suite_key": noise_floor.suite_key(SUITE), "items": 200,
             "points": [{"kl": 0.002, "flip_rate": 0.01}, {"kl": 0.01, "flip_rate": 0.03}]}
    assert noise_floor.expected_flips(0.0, SUITE, table) == 0.0
    assert noise_floor.expected_flips(0.001, SUITE, table) == pytest.approx(1.0)
    assert noise_floor.expected_flips(0.006, SUITE, table) == pytest.approx(4.0)
    assert noise_floor.expected_flips(0.5, SUITE, table) == pytest.approx(6.0)  # no more than the largest measured
    assert noise_floor.expected_flips(0.006, SUITE[:-1], table) is None  # another suite: no floor
    assert noise_floor.expected_flips(None, SUITE, table) is None


def test_the_floor_table_averages_seeds_per_target_kl():
    points = [FloorPoint("s", "batch", 0, 0.0, 0.0, 100, 1, 0)] + [
        FloorPoint("s", "random adapter", seed, target, target * (1 + seed / 10), 100, flips, 0)
        for target, seed, flips in [(0.003, 0, 2), (0.003, 1, 4), (0.011, 0, 10), (0.011, 1, 12)]]
    table = noise_floor.floor_table(points, "s")
    assert [r["target_kl"] for r in table["points"]] == [0.003, 0.011] and table["items"] == 100
    assert [r["flip_rate"] for r in table["points"]] == pytest.approx([0.03, 0.11])
    text = noise_floor.markdown(points)
    assert "| random adapter | 0.003 | 2 (0.0030), 4 (0.0033) |" in text and "| batch | 0 | 1 |" in text
