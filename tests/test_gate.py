"""Gate decisions with controlled scores: pass, and each way to fail."""

import pytest

from apiary.evals.contamination import Hit
import pytest

from apiary.evals.gate import Evidence, GateConfig, binomial_tail, decide, flip_test

RELEASED = {"arith": 0.60, "times": 0.90}


def test_a_candidate_no_worse_on_any_job_passes():
    d = decide(Evidence(candidate={"arith": 0.75, "times": 0.89}, released=RELEASED, retention_kl=0.01,
                        flips={"items": 100, "right_to_wrong": 2, "wrong_to_right": 3}))
    assert d.passed and d.reasons == [] and d.evidence["candidate"]["times"] == 0.89


def test_a_regression_on_one_job_fails_with_the_numbers():
    d = decide(Evidence(candidate={"arith": 0.95, "times": 0.80}, released=RELEASED))
    assert not d.passed and d.reasons == ["times: held-out 0.800 < released 0.900 - tolerance 0.02"]
    assert not decide(Evidence(candidate={"arith": 0.9}, released=RELEASED)).passed  # a job left unevaluated


def test_forgetting_on_the_retention_suite_fails():
    d = decide(Evidence(candidate={"arith": 0.9, "times": 0.9}, released=RELEASED, retention_kl=0.2,
                        flips={"items": 50, "right_to_wrong": 3, "wrong_to_right": 0}))
    assert not d.passed
    assert d.reasons[0] == "retention KL 0.2000 > 0.05"
    assert d.reasons[1].startswith("3 of 50 retention items flipped right to wrong (6.0%; noise floor 0.0")
    assert decide(Evidence(candidate={"arith": 0.9, "times": 0.9}, released=RELEASED, retention_kl=0.2),
                  GateConfig(max_retention_kl=0.5)).passed


def test_contaminated_training_data_fails():
    d = decide(Evidence(candidate={"arith": 1.0, "times": 1.0}, released=RELEASED,
                        contamination=[Hit(heldout_index=3, train_index=7, overlap=1.0)]))
    assert not d.passed and d.reasons == ["training data contains 1 held-out item(s)"]


def _flips(b: int, c: int = 0, n: int = 400) -> dict[str, int]:
    return {"items": n, "right_to_wrong": b, "wrong_to_right": c}


def test_binomial_tail_is_exact():
    assert binomial_tail(0, 10, 0.3) == 1.0 and binomial_tail(3, 3, 0.5) == pytest.approx(0.125)
    assert binomial_tail(2, 4, 0.5) == pytest.approx(11 / 16)
    assert binomial_tail(1, 400, 0.0) == 0.0 and binomial_tail(500, 400, 0.2) == 0.0
    assert binomial_tail(10, 2000, 0.01) == pytest.approx(1 - 0.004995, abs=1e-3)  # large n does not overflow


def test_flips_beyond_the_margin_with_no_floor_fail():
    test = flip_test(_flips(9), None, GateConfig())  # 2% of 400 = 8 allowed
    assert test.failed and test.floor == 0 and test.allowed == 8 and test.p_floor == 0.0
    assert test.p_mcnemar == pytest.approx(0.5 ** 9)
    assert not flip_test(_flips(8), None, GateConfig()).failed


def test_flips_within_the_noise_floor_at_the_candidates_kl_pass():
    # a random change of this KL flips 12 of 400 on its own: 15 flips is not forgetting beyond it
    assert not flip_test(_flips(15), 12.0, GateConfig()).failed
    assert flip_test(_flips(40), 12.0, GateConfig()).failed  # far beyond floor + margin, p tiny


def test_flips_are_counted_net_of_wrong_to_right_ones():
    test = flip_test(_flips(12, 12), None, GateConfig())
    assert test.p_mcnemar > 0.5 and not test.failed
    assert flip_test(_flips(12, 1), None, GateConfig()).failed  # net 11 > 8
    assert not flip_test(_flips(12, 4), None, GateConfig()).failed  # net 8


def test_flips_beyond_the_margin_but_likely_under_the_floor_pass():
    # allowed = 4 + 2 = 6.0 of 100, 7 flips: beyond it, but a change flipping 4% flips 7 or more 11% of the time
    test = flip_test(_flips(7, n=100), 4.0, GateConfig())
    assert test.right_to_wrong > test.allowed and test.p_floor > 0.05 and not test.failed


def test_every_decision_shows_the_floor_and_p_values():
    d = decide(Evidence(candidate={"arith": 0.9, "times": 0.9}, released=RELEASED, retention_kl=0.011,
                        flips=_flips(30), noise_floor=10.0))
    assert not d.passed and "noise floor 10.0" in d.reasons[0] and "McNemar" in d.reasons[0]
    assert d.evidence["noise_floor"] == 10.0 and d.evidence["flip_test"]["allowed"] == pytest.approx(18.0)
    ok = decide(Evidence(candidate={"arith": 0.9, "times": 0.9}, released=RELEASED, retention_kl=0.011,
                         flips=_flips(3), noise_floor=10.0))
    assert ok.passed and ok.evidence["flip_test"]["floor"] == 10.0 and ok.evidence["flip_test"]["p_floor"] > 0.5
    assert ok.config["alpha"] == 0.05 and ok.config["max_flip_rate"] == 0.02
@pytest.mark.parametrize("bad", [{"tolerance": -0.01}, {"max_retention_kl": -1.0}, {"max_retention_kl": float("nan")},
                                 {"max_flip_rate": -0.1}, {"max_flip_rate": 1.5}])
def test_a_gate_with_a_negative_or_meaningless_bound_is_refused(bad):
    with pytest.raises(ValueError, match=f"gate: {next(iter(bad))} must be"):
        GateConfig(**bad)
    assert GateConfig(tolerance=0.0, max_retention_kl=0.0, max_flip_rate=0.0).max_flip_rate == 0.0  # strict is fine
