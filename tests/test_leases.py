"""Leases in the store (store.leases) on SQLite and PostgreSQL, and what they are for: several server replicas
on one store learn a worker's feedback once, not once per replica."""

from __future__ import annotations

import threading
import time

import pytest

from replicas import learn_in_two_replicas

from apiary import Hive
from apiary.hive.feedback_learning import LearningConfig
from apiary.store import leases
from apiary.store.store import Store

ONE_DIGIT = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"]


def test_a_lease_is_held_by_one_holder_until_it_expires_or_is_given_up(tmp_path, store_url):
    engine = Store(tmp_path / "hive", url=store_url).engine
    assert leases.take(engine, "learn:arith", "a", 10, now=100.0)
    assert not leases.take(engine, "learn:arith", "b", 10, now=105.0)  # a holds it
    assert leases.take(engine, "learn:arith", "a", 10, now=108.0)  # renewed: now until 118
    assert not leases.take(engine, "learn:arith", "b", 10, now=115.0)
    assert leases.take(engine, "learn:other", "b", 10, now=115.0)  # leases are by name
    assert leases.take(engine, "learn:arith", "b", 10, now=118.0)  # a's ran out: b takes it
    leases.give_up(engine, "learn:arith", "a")  # not a's any more: nothing happens
    assert not leases.take(engine, "learn:arith", "a", 10, now=120.0)
    leases.give_up(engine, "learn:arith", "b")
    assert leases.take(engine, "learn:arith", "a", 10, now=120.0)
    with pytest.raises(ValueError, match="a lease lasts a number of seconds > 0"):
        leases.take(engine, "learn:arith", "a", 0)


@pytest.mark.parametrize("expired", [False, True], ids=["new", "expired"])
def test_holders_racing_for_a_lease_give_it_to_exactly_one(tmp_path, store_url, expired):
    store = Store(tmp_path / "hive", url=store_url)
    if expired:
        assert leases.take(store.engine, "learn:arith", "old", 1, now=time.time() - 10)
    start, won = threading.Barrier(8), []

    def race(n: int) -> None:
        start.wait()
        if leases.take(store.engine, "learn:arith", f"holder-{n}", 60):
            won.append(n)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


def test_a_held_lease_is_renewed_while_its_work_runs_and_freed_after(tmp_path):
    engine = Store(tmp_path / "hive").engine
    with leases.held(engine, "learn:arith", "a", 0.3) as mine:
        assert mine
        with leases.held(engine, "learn:arith", "b", 0.3) as theirs:
            assert not theirs
        time.sleep(0.8)  # past two lease lengths: only the renewals keep it a's
        assert not leases.take(engine, "learn:arith", "b", 0.3)
    assert leases.take(engine, "learn:arith", "b", 0.3)  # given up at the block's end


def test_two_replicas_learn_a_workers_feedback_once(tmp_path, tiny_core_dir, monkeypatch):
    """Two servers' background learning (two FeedbackLearning loops, each with a Hive of its own) on one store:
    the worker's feedback becomes one new adapter version, not one per replica."""
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    hive = Hive(tmp_path / "hive", core=str(tiny_core_dir))
    hive.deploy("rg:chain_sum", "arith", overrides=ONE_DIGIT)
    for episode in hive.attempt("rg:chain_sum", "arith", n=4, overrides=ONE_DIGIT):
        hive.feedback(episode.id, correction=episode.answer)
    results = learn_in_two_replicas(hive, tiny_core_dir, LearningConfig(min_feedback=4, poll_seconds=0.1))
    assert len(results) == 1
    assert [v.version for v in hive.store.adapter_versions("arith")] == [1]
    assert hive.store.count_feedback("arith", unconsumed=True) == 0
