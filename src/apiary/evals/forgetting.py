"""Forgetting and transfer across jobs learned one after another (GEM: Lopez-Paz and Ranzato, 2017).

R[i][j] is the held-out score on job j after stage i (stage i learned job i). With T jobs and
b[j] the score of the starting model on job j (standing in for GEM's random initialisation):

- ACC = mean over j of R[T-1][j]                     (how good the final model is on every job)
- BWT = mean over i < T-1 of R[T-1][i] - R[i][i]     (negative: later jobs made it forget earlier ones)
- FWT = mean over i > 0 of R[i-1][i] - b[i]          (positive: earlier jobs helped a job not yet learned)

Per item, `flips` counts held-out items that went from right to wrong and from wrong to right.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Transfer:
    acc: float
    bwt: float | None  # None with a single job
    fwt: float | None


def transfer(R: list[list[float]], base: list[float]) -> Transfer:
    """ACC, BWT and FWT of a T x T score matrix, given the starting model's score on each job."""
    T = len(R)
    if T == 0 or any(len(row) != T for row in R) or len(base) != T:
        raise ValueError(f"need a square T x T matrix and T base scores (got {T} rows, {len(base)} base scores)")
    acc = sum(R[T - 1]) / T
    if T == 1:
        return Transfer(acc=acc, bwt=None, fwt=None)
    bwt = sum(R[T - 1][i] - R[i][i] for i in range(T - 1)) / (T - 1)
    fwt = sum(R[i - 1][i] - base[i] for i in range(1, T)) / (T - 1)
    return Transfer(acc=acc, bwt=bwt, fwt=fwt)


def flips(before: list[float], after: list[float], right: float = 1.0) -> dict[str, int]:
    """Items right before and wrong after (and the reverse); an item is right when its score >= `right`."""
    if len(before) != len(after):
        raise ValueError(f"score lists differ in length: {len(before)} and {len(after)}")
    was = [b >= right for b in before]
    now = [a >= right for a in after]
    return {
        "items": len(before),
        "right_to_wrong": sum(w and not n for w, n in zip(was, now)),
        "wrong_to_right": sum(n and not w for w, n in zip(was, now)),
    }
