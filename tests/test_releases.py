"""Core versions, releases and rollback, and stored gate decisions."""

import pytest

from apiary.evals.gate import Evidence, decide
from apiary.store.records import CoreVersion, GateDecision
from apiary.store.store import Store


def _core(store, parent=0, method="ties"):
    version = store.next_core_version()
    return store.add_core_version(CoreVersion(version=version, parent=parent, method=method, path=str(store.core_dir(version)),
                                              sources=[{"worker": "arith", "adapter_version": 3}]))


def test_release_and_rollback_restore_the_previous_current_core(tmp_path):
    store = Store(tmp_path)
    assert store.current_core() == 0  # the base core until something is released
    one = _core(store)
    store.release(one)
    two = _core(store, parent=one)
    store.release(two)
    assert store.current_core() == 2
    store.release(one, reason="rollback")
    assert store.current_core() == 1
    assert [c.sources for c in store.core_versions()] == [[{"worker": "arith", "adapter_version": 3}]] * 2
    refused = _core(store, parent=one)
    with pytest.raises(ValueError, match="never released"):
        store.release(refused, reason="rollback")
    with pytest.raises(ValueError, match="no core version 9"):
        store.release(9)
    store.release(0, reason="rollback")  # back to the base core
    assert store.current_core() == 0


def test_gate_decisions_are_stored_with_their_numbers(tmp_path):
    store = Store(tmp_path)
    d = decide(Evidence(candidate={"arith": 0.5}, released={"arith": 0.7}, retention_kl=0.01))
    store.add_decision(GateDecision(candidate="core:1", passed=d.passed, reasons=d.reasons, evidence=d.evidence,
                                    config=d.config))
    [saved] = store.decisions("core:1")
    assert not saved.passed and saved.reasons == d.reasons
    assert saved.evidence["candidate"] == {"arith": 0.5} and saved.config["tolerance"] == 0.02
    assert store.decisions("core:2") == []
