"""Learning curves from the store: each worker's mean training reward per step, with its held-out scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # read only through its methods; importing it here would pull in SQLAlchemy
    from apiary.store.store import Store


def learning_curves(store: Store) -> dict[str, dict]:
    """worker -> {"steps": [...], "reward": [...], "heldout": [(step, score), ...]} (steps counted over all runs,
    from 0: the rollouts of step s were sampled after s updates; held-out starts with the core's score)."""
    curves = {}
    evals = store.evals()
    for w in store.workers():
        by_step = {(run_id, step): mean for run_id, step, mean in store.rl_reward_by_step(w.name)}
        keys = sorted(by_step)
        step_of_version = {0: 0}
        offset, runs = 0, {}
        for run_id, step in keys:
            runs.setdefault(run_id, offset)
            offset = max(offset, runs[run_id] + step + 1)
        for v in store.adapter_versions(w.name):
            step_of_version[v.version] = runs.get(v.run_id, 0) + v.step
        before = [e for e in evals if e.worker is None and e.job == w.job and e.core_version == w.core_version][:1]
        heldout = [(0, e.score) for e in before] + [(step_of_version.get(e.adapter_version, 0), e.score) for e in evals
                                                    if e.worker == w.name and e.job == w.job]
        curves[w.name] = {"steps": [runs[r] + s for r, s in keys],  # step s sampled after s updates
                             "reward": [by_step[k] for k in keys], "heldout": heldout,
                             "job": w.job}
    return curves
