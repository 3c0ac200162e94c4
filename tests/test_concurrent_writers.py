"""Concurrent writers on one SQLite hive: two `apiary learn` processes on two workers while feedback
is written through the store, as `apiary serve` does. No "database is locked", nothing lost.

Two learn processes (each with its held-out evals and gate) take minutes on a 2-core machine, so this
runs only when asked: APIARY_SLOW_TESTS=1 pytest tests/test_concurrent_writers.py."""

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

