"""The release gate: a candidate (a worker's adapter or a new core) goes live only if it is no worse.

A candidate passes when, for every job, its held-out score is at least the released score minus
`tolerance`; its retention KL to the base model on the retention prompts is at most
`max_retention_kl`; its right-to-wrong flips on the retention items pass the flip test below; and
none of its training data contains a held-out item. Every decision keeps its numbers and the
reasons for a refusal, so it can be stored and shown.

The flip test. Any change of the model flips some near-tie items, learned or not: the noise floor
(evals/noise_floor.py) is the number of right-to-wrong flips a random change of the candidate's
retention KL gives on this suite. With b items flipped right to wrong, c wrong to right, n items
and a floor of f flips, the candidate fails on flips only when both hold:

1. b - c > f + max_flip_rate x n: net of what it fixed, it flipped more than the floor by the
   margin (with no floor and nothing fixed this is the first rule, b > max_flip_rate x n);
2. the exact one-sided binomial test against the floor, P(X >= b) for X ~ Binomial(n, f / n), is at
   most `alpha`: more flips than a random change of that size gives (with no floor, f = 0, any
   b > 0 has p = 0, so the test never excuses flips the floor was not measured for).

McNemar's exact one-sided p on the discordant pairs, P(X >= b) for X ~ Binomial(b + c, 1/2), is
shown beside them (whether the flips lean right to wrong); it does not decide, because with c = 0
(the shipped suite: the base is right on every item) it would excuse up to 4 flips of any suite.
Both p-values and the floor are in every decision's evidence (`flip_test`) and in a refusal's reason.

`GateConfig()` is the one default gate: `apiary learn`, `consolidate`, a server's learning and the
command line's gate options all start from it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from apiary.evals.contamination import Hit


@dataclass(frozen=True)
class GateConfig:
    tolerance: float = 0.02
    """Held-out score may drop this much on a job (sampling noise) and still pass."""
    max_retention_kl: float = 0.05
    """Retention KL(base || candidate), nats per token, mean over the retention prompts."""
    max_flip_rate: float = 0.02
    """The margin of the flip test: right-to-wrong flips beyond the noise floor, as a share of the items."""
    alpha: float = 0.05
    """The flip test's significance level: flips fail only when the test against the floor gives p <= this."""

    def __post_init__(self):
        """A negative bound would refuse every candidate and a NaN would admit any: both are mistakes."""
        for name, value, top in [("tolerance", self.tolerance, None), ("max_retention_kl", self.max_retention_kl, None),
                                 ("max_flip_rate", self.max_flip_rate, 1.0)]:
            if not value >= 0 or (top is not None and value > top):
                bound = f"between 0 and {top:g} (a share of the items)" if top is not None else "0 or more"
                raise ValueError(f"gate: {name} must be {bound}, not {value}")


@dataclass
class Evidence:
    candidate: dict[str, float]  # job -> the candidate's held-out score
    released: dict[str, float]  # job -> the released version's held-out score (missing: a new job)
    retention_kl: float | None = None
    flips: dict[str, int] | None = None  # from evals.forgetting.flips on the retention items
    noise_floor: float | None = None  # right-to-wrong flips a random change of this KL gives (None: not measured)
    contamination: list[Hit] = field(default_factory=list)


@dataclass
class Decision:
    passed: bool
    reasons: list[str]
    evidence: dict
    config: dict


@dataclass(frozen=True)
class FlipTest:
    items: int
    right_to_wrong: int
    wrong_to_right: int
    floor: float  # expected right-to-wrong flips of a random change of the candidate's KL (0: unknown)
    allowed: float  # floor + max_flip_rate x items
    p_mcnemar: float  # P(X >= b), X ~ Binomial(b + c, 1/2)
    p_floor: float  # P(X >= b), X ~ Binomial(items, floor / items)
    failed: bool


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exactly."""
    if k <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0 if k <= n else 0.0
    def log_pmf(i: int) -> float:
        return (math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                + i * math.log(p) + (n - i) * math.log1p(-p))
    return min(1.0, sum(math.exp(log_pmf(i)) for i in range(k, n + 1)))


def flip_test(flips: dict[str, int], floor: float | None, config: GateConfig) -> FlipTest:
    """The gate's test of right-to-wrong flips against wrong-to-right ones and the noise floor (module doc)."""
    n, b, c = flips["items"], flips["right_to_wrong"], flips["wrong_to_right"]
    f = min(max(floor or 0.0, 0.0), float(n))
    allowed = f + config.max_flip_rate * n
    p_mcnemar = binomial_tail(b, b + c, 0.5)
    p_floor = binomial_tail(b, n, f / n if n else 0.0)
    failed = b - c > allowed and p_floor <= config.alpha
    return FlipTest(items=n, right_to_wrong=b, wrong_to_right=c, floor=f, allowed=allowed, p_mcnemar=p_mcnemar,
                    p_floor=p_floor, failed=failed)


def decide(evidence: Evidence, config: GateConfig = GateConfig()) -> Decision:
    """Pass or refuse, with the reasons for a refusal; pure (the numbers are all in `evidence`)."""
    reasons = []
    for job, released in sorted(evidence.released.items()):
        score = evidence.candidate.get(job)
        if score is None:
            reasons.append(f"{job}: no held-out score for the candidate")
        elif score < released - config.tolerance:
            reasons.append(f"{job}: held-out {score:.3f} < released {released:.3f} - tolerance {config.tolerance:g}")
    if evidence.retention_kl is not None and evidence.retention_kl > config.max_retention_kl:
        reasons.append(f"retention KL {evidence.retention_kl:.4f} > {config.max_retention_kl:g}")
    test = flip_test(evidence.flips, evidence.noise_floor, config) if evidence.flips and evidence.flips["items"] else None
    if test is not None and test.failed:
        reasons.append(f"{test.right_to_wrong} of {test.items} retention items flipped right to wrong "
                       f"({test.right_to_wrong / test.items:.1%}; noise floor {test.floor:.1f} at this KL + margin "
                       f"{config.max_flip_rate:.1%} = {test.allowed:.1f} allowed; {test.wrong_to_right} wrong to right; "
                       f"p = {test.p_mcnemar:.2g} McNemar, {test.p_floor:.2g} against the floor)")
    if evidence.contamination:
        reasons.append(f"training data contains {len(evidence.contamination)} held-out item(s)")
    shown = asdict(evidence) | {"flip_test": asdict(test) if test else None}
    return Decision(passed=not reasons, reasons=reasons, evidence=shown, config=asdict(config))
