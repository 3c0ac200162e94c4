"""Concurrent writers on one store. On SQLite: two `apiary learn` processes on two workers while feedback
is written through the store, as `apiary serve` does; no "database is locked", nothing lost. Two learn
processes (each with its held-out evals and gate) take minutes on a 2-core machine, so that one runs only
when asked: APIARY_SLOW_TESTS=1 pytest tests/test_concurrent_writers.py. On SQLite and PostgreSQL: four
writer processes inserting episodes and feedback at once lose and duplicate nothing (quick)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apiary import Hive
from apiary.store.feedback import make_feedback
from apiary.store.records import Episode

CHAIN = ["rg:chain_sum", "min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "heldout_size=4"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def learn(hive: Path, core: Path, worker: str) -> subprocess.Popen:
    args = [sys.executable, "-c", "from apiary.cli import main; main()", "learn", *CHAIN, "--worker", worker, "--steps", "2", "--prompts", "2",
            "--samples", "2", "--max-new-tokens", "3", "--hive", str(hive), "--core", str(core), "--json"]
    env = os.environ | {"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not os.environ.get("APIARY_SLOW_TESTS"), reason="minutes long: set APIARY_SLOW_TESTS=1")
def test_two_learn_processes_and_feedback_writes_share_one_sqlite_hive_without_locks_or_losses(tmp_path, tiny_core_dir):
    hive = Hive(tmp_path / "hive", core=str(tiny_core_dir))
    chat = lambda n: Episode(job="chat", task_id=f"t{n}", messages=[{"role": "user", "content": f"{n} + 1"}],  # noqa: E731
                             completion="?", score=None, origin="serve")
    runs = [learn(hive.path, tiny_core_dir, worker) for worker in ("left", "right")]
    written = []
    while any(r.poll() is None for r in runs):  # a server's writes: an episode, then feedback on it
        (episode_id,) = hive.store.add_episodes([chat(len(written))])
        written.append(hive.add_feedback([make_feedback(episode_id, reward=len(written) % 3 / 2)])[0].id)
        time.sleep(0.05)
    outputs = [r.communicate() for r in runs]
    for r, (out, err) in zip(runs, outputs):
        assert r.returncode == 0 and "database is locked" not in err, err[-2000:]
    assert len(written) >= 5  # the writes did overlap the learning
    assert sorted(f.id for f in hive.store.feedback()) == sorted(written)  # every acknowledged write is there
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
