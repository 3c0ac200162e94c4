"""The release gate: a candidate (a worker's adapter or a new core) goes live only if it is no worse.

A candidate passes when, for every job, its held-out score is at least the released score minus
`tolerance`; its retention KL to the base model on the retention prompts is at most
`max_retention_kl`; at most `max_flip_rate` of the retention items it was right on before flip to
wrong; and none of its training data contains a held-out item. Every decision keeps its numbers
and the reasons for a refusal, so it can be stored and shown.

`GateConfig()` is the one default gate: `apiary learn`, `consolidate`, a server's learning and the
command line's gate options all start from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from apiary.evals.contamination import Hit


@dataclass(frozen=True)
class GateConfig:
    tolerance: float = 0.02  # held-out score may drop this much on a job (sampling noise) and still pass
    max_retention_kl: float = 0.05  # nats per token, mean over retention prompts
    max_flip_rate: float = 0.02  # right-to-wrong flips on retention items, as a share of the items

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
    contamination: list[Hit] = field(default_factory=list)


@dataclass
class Decision:
    passed: bool
    reasons: list[str]
    evidence: dict
    config: dict


def decide(evidence: Evidence, config: GateConfig = GateConfig()) -> Decision:
    reasons = []
    for job, released in sorted(evidence.released.items()):
        score = evidence.candidate.get(job)
        if score is None:
            reasons.append(f"{job}: no held-out score for the candidate")
        elif score < released - config.tolerance:
            reasons.append(f"{job}: held-out {score:.3f} < released {released:.3f} - tolerance {config.tolerance:g}")
    if evidence.retention_kl is not None and evidence.retention_kl > config.max_retention_kl:
        reasons.append(f"retention KL {evidence.retention_kl:.4f} > {config.max_retention_kl:g}")
    if evidence.flips is not None and evidence.flips["items"]:
        rate = evidence.flips["right_to_wrong"] / evidence.flips["items"]
        if rate > config.max_flip_rate:
            reasons.append(f"{evidence.flips['right_to_wrong']} of {evidence.flips['items']} retention items flipped "
                           f"right to wrong ({rate:.1%} > {config.max_flip_rate:.1%})")
    if evidence.contamination:
        reasons.append(f"training data contains {len(evidence.contamination)} held-out item(s)")
    return Decision(passed=not reasons, reasons=reasons, evidence=asdict(evidence), config=asdict(config))
