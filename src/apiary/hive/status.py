"""What the hive holds right now, read from the store alone (no model is loaded)."""

from __future__ import annotations

from apiary.store.records import GateDecision
from apiary.store.store import Store


def status(store: Store) -> dict:
    """The current core, the base core (v0) and every core version after it with its gate decision, every
    worker with its live adapter version (what is served, evaluated and learned on), how that version went
    live (`released_by`: gate, ungated, rollback, pin, or learn in hives made before learn was gated), its
    latest one, the live one's held-out score and the latest gate decision on its versions; and every
    worker gate decision."""
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
    worker_releases = sorted(store.table_rows("worker_releases"), key=lambda r: r["id"])
    by_gate = {(r["worker"], r["adapter_version"]) for r in worker_releases if r["reason"] in ("gate", "ungated")}
    worker_gates = [_worker_gate(d, by_gate) for d in store.decisions_like("worker:")]
    released_by = {r["worker"]: r["reason"] for r in worker_releases}
    workers = []
    for w in store.workers():
        mine = [e for e in evals if e.worker == (w.name if w.live_version else None) and e.job == w.job
                and e.adapter_version == w.live_version and e.core_version == w.core_version]
        workers.append({"name": w.name, "job": w.job, "core_version": w.core_version, "live_version": w.live_version,
                        "latest_version": w.latest_version, "heldout": mine[-1].score if mine else None,
                        "episodes": store.count_episodes(w.name), "released_by": released_by.get(w.name),
                        "last_gate": next((g for g in reversed(worker_gates) if g["worker"] == w.name), None)})
    releases = [{"core_version": r["core_version"], "reason": r["reason"], "at": r["created_at"].isoformat()}
                for r in sorted(store.table_rows("releases"), key=lambda r: r["id"])]
    return {"hive": str(store.root), "current_core": store.current_core(), "base_core": _base_core(store),
            "core_versions": cores, "workers": workers, "releases": releases, "worker_gates": worker_gates}


def _base_core(store: Store) -> dict:
    """Core v0, the base model: its name and prompt format as the first worker recorded them (none yet: unknown)."""
    first = next(iter(sorted(store.workers(), key=lambda w: w.created_at)), None)
    return {"version": 0, "name": first.core if first else None, "prompt_format": first.prompt_format if first else None}


def _worker_gate(decision: GateDecision, by_gate: set[tuple[str, int]]) -> dict:
    """A worker gate decision ("worker:NAME:V") as status shows it: the verdict, its reasons, the numbers,
    and whether the version was released by it (`released`: passed, or the user's override)."""
    worker, version = decision.candidate.removeprefix("worker:").rsplit(":", 1)
    evidence = decision.evidence
    return {"worker": worker, "version": int(version), "passed": decision.passed, "reasons": decision.reasons,
            "released": (worker, int(version)) in by_gate,
            "override": evidence.get("override"), "live": evidence.get("live"),
            "heldout": next(iter(evidence.get("candidate", {}).values()), None),
            "live_heldout": next(iter(evidence.get("released", {}).values()), None), "retention_kl": evidence.get("retention_kl"),
            "flips": evidence.get("flips"), "contamination": len(evidence.get("contamination") or []),
            "at": decision.created_at.isoformat()}


def gate_verdict(gate: dict) -> str:
    """A worker gate decision in words: passed, refused (and why), or overridden by the user (and what
    the gate found)."""
    if gate["passed"]:
        return "passed"
    found = [r for r in gate["reasons"] if r != gate["override"]]
    if gate["override"]:
        return gate["override"] + (f"; the gate found: {'; '.join(found)}" if found else "")
    return "refused: " + "; ".join(found)
