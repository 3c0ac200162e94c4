"""Kills from outside, two trials of each command (the benchmarks run twenty: python -m apiary.bench.kills):
what CI runs so that the trials cannot rot. Seeded, so the kill moments are the same every run."""

from __future__ import annotations

import pytest

from apiary import Hive
from apiary.bench.kill_consolidate import WORKERS
from apiary.store.records import AdapterVersion

ONE_DIGIT = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "heldout_size=4"]


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path_factory.getbasetemp() / "kills-cache"))  # shared by the trials


def test_learn_killed_at_random_moments_checks_without_damage_resumes_and_loses_nothing(tiny_core_dir):
    from apiary.bench.kill_learn import run

    report = run(trials=2, seed=3, core=tiny_core_dir, kill_within=12.0, steps=2)
    assert report.trials == 2 and report.resumed == 2 and report.items_lost == 0
    assert report.clean_checks == report.killed


def test_serve_killed_while_learning_and_swapping_keeps_every_acknowledged_feedback_and_restarts(tiny_core_dir):
    from apiary.bench.kill_serve import run

    report = run(trials=2, seed=0, core=tiny_core_dir)
    assert report.trials == report.killed == report.clean_checks == report.resumed == 2
    assert report.items_at_kills > 0 and report.items_lost == 0


def test_consolidate_killed_at_random_moments_leaves_a_whole_core_and_runs_again(tmp_path, tiny_core_dir, random_adapter):
    from apiary.bench.kill_consolidate import run

    learned = Hive(tmp_path / "learned", core=str(tiny_core_dir))  # two workers with a live adapter each, as a learn leaves them
    for seed, (worker, job) in enumerate(WORKERS.items()):
        learned.deploy(job, worker, overrides=ONE_DIGIT)
        random_adapter(learned.store.adapter_dir(worker, 1), seed)
        learned.store.add_adapter_version(AdapterVersion(worker=worker, version=1, parent=0, step=1, final=True,
                                                         path=str(learned.store.adapter_dir(worker, 1))), [])
        learned.store.release_worker(worker, 1, "ungated")
    learned.store.engine.dispose()
    report = run(trials=2, seed=1, core=tiny_core_dir, kill_within=20.0, methods=(["--method", "linear"],),
                 learned=learned.path)
    assert report.trials == report.resumed == 2 and report.clean_checks == report.killed
    assert report.items_at_kills > 0 and report.items_lost == 0


def test_learn_kill_moments_follow_the_length_of_the_run_before(monkeypatch, tmp_path):
    """Each trial's window is the previous uninterrupted run's length (the calibration run, then each resume), so a
    machine that speeds up or slows down does not put the kill moments after the run has ended."""
    from apiary.bench import kill_learn
    from apiary.bench.kill_trials import Trial

    resumes = iter([10.0, 4.0, 6.0])
    drawn = []

    def fake_trial(hive, core, kill_at, steps):
        drawn.append(kill_at)
        return Trial(kill_at=kill_at, killed=True, resumed=True), next(resumes)

    monkeypatch.setattr(kill_learn, "one_trial", fake_trial)
    monkeypatch.setattr(kill_learn, "finish", lambda process, what: True)
    monkeypatch.setattr(kill_learn, "_learn", lambda *args, **kw: None)
    ticks = iter([100.0, 120.0])  # the calibration run: 20 s
    monkeypatch.setattr(kill_learn.time, "perf_counter", lambda: next(ticks))
    report = kill_learn.run(trials=3, seed=0, core=tmp_path)
    assert drawn[0] <= 20.0 and drawn[1] <= 10.0 and drawn[2] <= 4.0
    assert report.seconds_per_run == round((20.0 + 10.0 + 4.0) / 3, 1)
