"""Forgetting and transfer across jobs learned one after another (GEM: Lopez-Paz and Ranzato, 2017).

R[i][j] is the held-out score on job j after stage i (stage i learned job i). With T jobs and
b[j] the score of the starting model on job j (standing in for GEM's random initialisation):

- ACC = mean over j of R[T-1][j]                     (how good the final model is on every job)
- BWT = mean over i < T-1 of R[T-1][i] - R[i][i]     (negative: later jobs made it forget earlier ones)
- FWT = mean over i > 0 of R[i-1][i] - b[i]          (positive: earlier jobs helped a job not yet learned)

`forgetting_matrix` reads the store's evals: the held-out score of every core version and of each
worker's latest adapter on every job. Per item, `flips` counts held-out items that went from right to wrong and from wrong to right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # read only through its methods; importing it here would pull in SQLAlchemy
    from apiary.store.store import Store


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


def forgetting_matrix(store: Store) -> dict:
    """Held-out score of each core version and each worker's live adapter version on each job (latest eval)."""
    jobs = sorted({e.job for e in store.evals()})
    rows: dict[str, dict[str, float]] = {}
    for e in store.evals():
        if e.worker is None:
            rows.setdefault(f"core v{e.core_version}", {})[e.job] = e.score
    for w in store.workers():
        for e in store.evals(w.name):
            if w.live_version and e.adapter_version == w.live_version:
                rows.setdefault(f"worker {w.name}", {})[e.job] = e.score
    order = sorted(rows, key=lambda r: (not r.startswith("core"), int(r[6:]) if r.startswith("core") else 0, r))
    return {"jobs": jobs, "rows": order, "scores": [[rows[r].get(j) for j in jobs] for r in order]}
