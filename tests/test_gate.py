"""Gate decisions with controlled scores: pass, and each way to fail."""

import pytest

from apiary.evals.contamination import Hit
from apiary.evals.gate import Evidence, GateConfig, decide

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
    assert d.reasons == ["retention KL 0.2000 > 0.05", "3 of 50 retention items flipped right to wrong (6.0% > 2.0%)"]
    assert decide(Evidence(candidate={"arith": 0.9, "times": 0.9}, released=RELEASED, retention_kl=0.2),
                  GateConfig(max_retention_kl=0.5)).passed


def test_contaminated_training_data_fails():
    d = decide(Evidence(candidate={"arith": 1.0, "times": 1.0}, released=RELEASED,
                        contamination=[Hit(heldout_index=3, train_index=7, overlap=1.0)]))
    assert not d.passed and d.reasons == ["training data contains 1 held-out item(s)"]


@pytest.mark.parametrize("bad", [{"tolerance": -0.01}, {"max_retention_kl": -1.0}, {"max_retention_kl": float("nan")},
                                 {"max_flip_rate": -0.1}, {"max_flip_rate": 1.5}])
def test_a_gate_with_a_negative_or_meaningless_bound_is_refused(bad):
    with pytest.raises(ValueError, match=f"gate: {next(iter(bad))} must be"):
        GateConfig(**bad)
    assert GateConfig(tolerance=0.0, max_retention_kl=0.0, max_flip_rate=0.0).max_flip_rate == 0.0  # strict is fine
