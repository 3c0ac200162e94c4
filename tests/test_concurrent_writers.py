"""Concurrent writers on one store. On SQLite: a live `apiary serve` taking chats and feedback over HTTP
while two `apiary learn` processes learn two other workers; no "database is locked", nothing lost. Two
learn processes (each with its held-out evals and gate) take minutes on a 2-core machine, so that one runs
only when asked: APIARY_SLOW_TESTS=1 pytest tests/test_concurrent_writers.py. On SQLite and PostgreSQL:
four writer processes inserting episodes and feedback at once lose and duplicate nothing (quick)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from apiary import Hive
from apiary.bench.kill_serve import give_feedback
from apiary.bench.kill_trials import free_port, wait_until_serving

CHAIN = ["rg:chain_sum", "min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "heldout_size=4"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def apiary(*args: str, **streams) -> subprocess.Popen:
    """An `apiary` command as its own process, on this checkout's sources."""
    env = os.environ | {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", "from apiary.cli import main; main()", *args], env=env, text=True,
                            **streams)


def learn(hive: Path, core: Path, worker: str) -> subprocess.Popen:
    return apiary("learn", *CHAIN, "--worker", worker, "--steps", "2", "--prompts", "2", "--samples", "2",
                  "--max-new-tokens", "3", "--hive", str(hive), "--core", str(core), "--json",
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.skipif(not os.environ.get("APIARY_SLOW_TESTS"), reason="minutes long: set APIARY_SLOW_TESTS=1")
def test_a_live_server_taking_feedback_and_two_learn_processes_share_one_sqlite_hive_without_locks_or_losses(
        tmp_path, tiny_core_dir):
    hive = Hive(tmp_path / "hive", core=str(tiny_core_dir))
    hive.deploy(CHAIN[0], "arith", overrides=CHAIN[1:])
    port, log = free_port(), tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:  # a file, not a pipe: an unread pipe would block the server
        server = apiary("serve", "--hive", str(hive.path), "--core", str(tiny_core_dir), "--port", str(port),
                        "--no-learn", stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(server, url, 180)
        runs = [learn(hive.path, tiny_core_dir, worker) for worker in ("left", "right")]
        acknowledged, exchanges = [], 0
        with httpx.Client(base_url=url, timeout=120) as client:
            while any(r.poll() is None for r in runs):  # a chat with the server's worker, then feedback on the reply
                acknowledged += give_feedback(client, exchanges)
                exchanges += 1
        outputs = [r.communicate() for r in runs]
        assert server.poll() is None, log.read_text()[-2000:]
    finally:
        server.terminate()
        server.wait(timeout=60)
    for r, (_out, err) in zip(runs, outputs):
        assert r.returncode == 0 and "database is locked" not in err, err[-2000:]
    assert "database is locked" not in log.read_text()
    assert exchanges >= 5 and len(acknowledged) == exchanges  # the writes overlapped the learning; none was refused
    assert sorted(f.id for f in hive.store.feedback()) == sorted(acknowledged)  # every acknowledged write is there
    assert len(hive.store.episodes("arith")) == exchanges
    for worker in ("left", "right"):
        assert hive.store.worker(worker).latest_version == 1 and len(hive.store.episodes(worker)) == 8


def test_concurrent_writer_processes_lose_and_duplicate_nothing(tmp_path, store_url):
    """Four processes at once, each writing episodes in groups and a reward on each group (as learners and
    server replicas do), on SQLite and on PostgreSQL: every acknowledged write is there exactly once."""
    from apiary.bench.store_scale import write_concurrently
    from apiary.store.store import Store

    written = write_concurrently(store_url, str(tmp_path / "hive"), writers=4, episodes=96)
    episode_ids = [i for w in written for i in w.episode_ids]
    feedback_ids = [i for w in written for i in w.feedback_ids]
    assert len(episode_ids) == 96 == len(set(episode_ids)) and len(feedback_ids) == 12 == len(set(feedback_ids))
    store = Store(tmp_path / "hive", store_url)
    assert sorted(e.id for e in store.episodes()) == sorted(episode_ids)
    stored = {f.id: f.episode_id for f in store.feedback()}
    assert stored == {f: e for w in written for f, e in zip(w.feedback_ids, w.feedback_on)}
    for w in written:  # each writer's feedback is on an episode that writer wrote
        assert set(w.feedback_on) <= set(w.episode_ids)


def test_store_scale_measures_only_the_stores_named():
    from apiary.bench.store_scale import run

    figures = run([2000], [2], 32, None, stores=("sqlite",))
    assert list(figures["sizes"]) == ["sqlite:2000:this"] and list(figures["writers"]) == ["sqlite:2"]
    assert figures["skipped"] == {}  # no PostgreSQL was started, so none was missing
    point = figures["sizes"]["sqlite:2000:this"]
    assert point["episodes"] == 2000 and point["export_peak_mb"] > 0 and point["report_seconds"] > 0


def test_store_scale_fills_both_stores_with_the_same_rows(tmp_path, store_url):
    """fill() inserts by executemany on SQLite and by COPY on PostgreSQL: the same episodes, the same rewards."""
    from sqlalchemy import select

    from apiary.bench.store_scale import FILL_BATCH, fill, synthetic
    from apiary.store import schema
    from apiary.store.store import Store

    n = FILL_BATCH + 250  # two batches, the second one short
    store = Store(tmp_path / "hive", store_url)
    fill(store, n)
    with store.engine.connect() as db:
        episodes = db.execute(select(schema.episodes.c.id, schema.episodes.c.messages, schema.episodes.c.worker)
                              .order_by(schema.episodes.c.id)).all()
        rewarded = db.execute(select(schema.feedback.c.episode_id, schema.feedback.c.reward)).all()
    assert len(episodes) == n and episodes[-1].messages == synthetic(n - 1)["messages"]
    assert [e.worker for e in episodes[:4]] == ["w0", "w1", "w2", "w3"]
    first = episodes[0].id
    assert sorted(e for e, _ in rewarded) == [first + k for k in range(0, n, 100)]
    assert {r for _, r in rewarded} == {1.0}
    store.engine.dispose()
