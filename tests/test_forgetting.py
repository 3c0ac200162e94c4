"""GEM's ACC / BWT / FWT and per-item flips against hand-computed values."""

import pytest

from apiary.evals.forgetting import flips, transfer


def test_transfer_matches_hand_computed_values():
    R = [[0.8, 0.1, 0.2],
         [0.6, 0.9, 0.3],
         [0.5, 0.7, 0.9]]
    base = [0.1, 0.0, 0.2]
    t = transfer(R, base)
    assert t.acc == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert t.bwt == pytest.approx(((0.5 - 0.8) + (0.7 - 0.9)) / 2)  # -0.25: forgot
    assert t.fwt == pytest.approx(((0.1 - 0.0) + (0.3 - 0.2)) / 2)  # +0.10: earlier jobs helped


def test_transfer_edge_cases():
    assert transfer([[0.4]], [0.1]).bwt is None and transfer([[0.4]], [0.1]).acc == 0.4
    with pytest.raises(ValueError, match="square"):
        transfer([[0.1, 0.2]], [0.0])


def test_flips_count_each_direction():
    assert flips([1, 1, 0, 0, 1], [1, 0, 1, 0, 0]) == {"items": 5, "right_to_wrong": 2, "wrong_to_right": 1}
    with pytest.raises(ValueError, match="differ in length"):
        flips([1], [1, 0])
