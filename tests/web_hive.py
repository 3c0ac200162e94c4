"""A small hive with something on every page (workers of three tenants, versions, evals, gate decisions, a
core version, runs, episodes, a script-injection payload), for the page tests and the README's screenshots.
The records are written straight into the store, as learning and serving would write them."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import pytest

from apiary import Hive
from apiary.serve.tenants import Tenants
from apiary.store.feedback import make_feedback
from apiary.store.records import AdapterVersion, CoreVersion, Episode, EvalResult, GateDecision, Run, RunBudget, now

ONE_DIGIT = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1"]
PAYLOAD = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
SECRET = "acme's private answer"


def populate(hive: Hive, random_adapter) -> dict[str, int]:
    """Fill `hive` (its workers deployed already: arith, acme-sums, bravo-times); returns the ids tests use."""
    store = hive.store
    job = store.worker("arith").job
    learned = _runs(store, job)
    for version, seed in ((1, 1), (2, 2)):
        random_adapter(store.adapter_dir("arith", version), seed)
        store.add_adapter_version(AdapterVersion(worker="arith", version=version, parent=version - 1, step=10 * version,
                                                 path=str(store.adapter_dir("arith", version))), [],
                                  learned[:2] if version == 1 else learned[2:])
        store.release_worker("arith", version, reason="gate")
    store.add_eval(EvalResult(worker=None, job=job, n=64, score=0.31))
    for version, score in ((1, 0.52), (2, 0.64)):
        store.add_eval(EvalResult(worker="arith", adapter_version=version, job=job, n=64, score=score))
    _gates(store, job)
    ids = _episodes(store, job)
    store.add_core_version(CoreVersion(version=1, parent=0, method="distill", path=str(store.core_dir(1)),
                                       sources=[{"worker": "arith", "adapter_version": 2},
                                                {"worker": "bravo-times", "adapter_version": 0}],
                                       details={"jobs": [{"job": job, "worker": "arith", "released": 0.31, "worker_score": 0.64,
                                                          "candidate": 0.6, "gain_kept": 0.88}], "retention_kl": 0.0021,
                                                "flips": {"right_to_wrong": 4, "items": 878}}))
    store.add_decision(GateDecision(candidate="core:1", passed=True, evidence={}))
    return ids


def _gates(store, job: str) -> None:
    for version, passed, before, after in ((1, True, 0.31, 0.52), (2, True, 0.52, 0.64), (3, False, 0.64, 0.58)):
        reasons = [] if passed else ["held-out 0.580 is below the live version's 0.640 by more than the tolerance 0.02"]
        store.add_decision(GateDecision(candidate=f"worker:arith:{version}", passed=passed, reasons=reasons, evidence={
            "candidate": {job: after}, "released": {job: before}, "retention_kl": 0.001 * version,
            "flips": {"right_to_wrong": version, "items": 878}}))


def _runs(store, job: str) -> list[int]:
    """A finished run with a rising reward, and one in progress; returns the ids of 13 pieces of feedback on the
    finished run's episodes (for arith's adapter versions to have learned from)."""
    finished = store.start_run(Run(worker="arith", job=job, learner="grpo", status="finished", step=20))
    steps = [Episode(job=job, task_id=f"t{s}-{k}", messages=[{"role": "user", "content": "1 + 1"}], completion="2",
                     score=min(1.0, 0.2 + s * 0.03 + 0.1 * (k % 2)), origin="rl", worker="arith", run_id=finished, step=s)
             for s in range(20) for k in range(4)]
    rl = store.add_episodes(steps)
    said = [make_feedback(rl[i], reward=1.0, by="ana") if i % 3 == 0 else
            make_feedback(rl[i], correction="2", by="ana") if i % 3 == 1 else
            make_feedback(rl[i], critique="Answer with the number only.", by="ben") for i in range(13)]
    started = now() - timedelta(minutes=2)
    running = store.start_run(Run(worker="arith", job=job, learner="rewards", step=3, started_at=started,
                                  budget=RunBudget(steps=10, since=started)))
    store.add_episodes([Episode(job=job, task_id="r", messages=[{"role": "user", "content": "2 + 2"}], completion="4",
                                score=0.75, origin="rl", worker="arith", run_id=running, step=3)])
    return [f.id for f in store.add_feedback(said)]


def _episodes(store, job: str) -> dict[str, int]:
    question = [{"role": "system", "content": "Answer with the number only."},
                {"role": "user", "content": "What is 3 + 4? Give the sum."}]
    a, b, wrong, injected, acme = store.add_episodes([
        Episode(job=job, task_id="q7", messages=question, completion="7", answer="7", origin="attempt", worker="arith",
                adapter_version=2, score=1.0),
        Episode(job=job, task_id="q7", messages=question, completion="It is 8.", answer="7", origin="attempt",
                worker="arith", adapter_version=2, score=0.0),
        Episode(job=job, task_id="q9", messages=[{"role": "user", "content": "What is 5 + 4?"}], completion="10",
                answer="9", origin="attempt", worker="arith", adapter_version=2, score=0.0),
        Episode(job=job, task_id="serve:x", messages=[{"role": "user", "content": "Say hello " + PAYLOAD}],
                completion=PAYLOAD, origin="serve", worker="arith", adapter_version=2, tenant="local"),
        Episode(job=job, task_id="q1", messages=[{"role": "user", "content": "What is 1 + 1?"}], completion=SECRET,
                answer="2", origin="attempt", worker="acme-sums", score=0.0),
    ])
    return {"a": a, "b": b, "wrong": wrong, "injected": injected, "acme": acme}


KEYS = {"key-local": "local", "key-acme": "acme", "key-bravo": "bravo"}


def make_hive(root, tiny_core_dir) -> Hive:
    hive = Hive(root, core=str(tiny_core_dir))
    hive.deploy("rg:chain_sum", "arith", overrides=ONE_DIGIT)
    hive.deploy("rg:chain_sum", "acme-sums", tenant="acme", overrides=ONE_DIGIT)
    hive.deploy("rg:products", "bravo-times", tenant="bravo", overrides=ONE_DIGIT)
    return hive


def server(hive: Hive, tiny_core_dir, tenants):
    """A real server on a free localhost port (not learning: the pages are what is tested)."""
    from apiary.serve.app import ServerThread, create_app
    from apiary.serve.service import ServeConfig, Service

    config = ServeConfig(learn=False, watch_seconds=0.1, max_tokens=16)
    return ServerThread(create_app(Service(hive.path, core=str(tiny_core_dir), config=config), tenants))


@contextmanager
def running_site(tmp_path_factory, tiny_core_dir, random_adapter):
    """The populated hive served with the test keys: (the running server, the hive, the ids tests use)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("APIARY_CACHE", str(tmp_path_factory.mktemp("cache")))
        hive = make_hive(tmp_path_factory.mktemp("web") / "hive", tiny_core_dir)
        ids = populate(hive, random_adapter)
        with server(hive, tiny_core_dir, Tenants(KEYS)) as running:
            yield running, hive, ids
