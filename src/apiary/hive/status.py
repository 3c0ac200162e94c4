"""What the hive holds right now, read from the store alone (no model is loaded)."""

from __future__ import annotations

from apiary.store.store import Store


def status(store: Store) -> dict:
    """The current core, the base core (v0) and every core version after it with its gate decision, every
    worker with its live adapter version (what is served, evaluated and learned on), its latest one, and the
    live one's held-out score."""
    decisions = {d.candidate: d for d in store.decisions()}
    released = store.released_versions()
    cores = []
    for c in store.core_versions():
        decision = decisions.get(f"core:{c.version}")
        cores.append({"version": c.version, "parent": c.parent, "method": c.method, "released": c.version in released,
                      "passed": decision.passed if decision else None, "reasons": decision.reasons if decision else [],
                      "sources": c.sources, "jobs": c.details.get("jobs", []), "retention_kl": c.details.get("retention_kl"),
                      "flips": c.details.get("flips"), "created_at": c.created_at.isoformat()})
    evals = store.evals()
    workers = []
    for w in store.workers():
        mine = [e for e in evals if e.worker == (w.name if w.live_version else None) and e.job == w.job
                and e.adapter_version == w.live_version and e.core_version == w.core_version]
        workers.append({"name": w.name, "job": w.job, "core_version": w.core_version, "live_version": w.live_version,
                        "latest_version": w.latest_version, "heldout": mine[-1].score if mine else None,
                        "episodes": store.count_episodes(w.name)})
    releases = [{"core_version": r["core_version"], "reason": r["reason"], "at": r["created_at"].isoformat()}
                for r in sorted(store.table_rows("releases"), key=lambda r: r["id"])]
    return {"hive": str(store.root), "current_core": store.current_core(), "base_core": _base_core(store),
            "core_versions": cores, "workers": workers, "releases": releases}


def _base_core(store: Store) -> dict:
    """Core v0, the base model: its name and prompt format as the first worker recorded them (none yet: unknown)."""
    first = next(iter(sorted(store.workers(), key=lambda w: w.created_at)), None)
    return {"version": 0, "name": first.core if first else None, "prompt_format": first.prompt_format if first else None}
