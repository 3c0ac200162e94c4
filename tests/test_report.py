"""The report's reward-hacking check and forgetting matrix, on a store with known records."""

from apiary.evals.curves import learning_curves
from apiary.evals.forgetting import forgetting_matrix
from apiary.evals.reward_hacking import reward_gaps
from apiary.hive.report import write_report
from apiary.store.records import AdapterVersion, Episode, EvalResult
from apiary.store.store import Store


def _worker(store: Store, name: str, rewards: list[float], heldout: list[float]) -> None:
    """Adapter versions 1..n; version v learned from rollouts of version v-1 with mean reward rewards[v-1];
    heldout[v] is the held-out score of version v (heldout[0]: the core)."""
    store.ensure_worker(name, "job", "core", {"name": "job"})
    store.add_eval(EvalResult(worker=None, job="job", n=10, score=heldout[0]))
    for version, reward in enumerate(rewards, start=1):
        episodes = [Episode(job="job", task_id=f"t{i}", messages=[{"role": "user", "content": "q"}], completion="a",
                            score=float(i < 10 * reward), origin="rl", worker=name, adapter_version=version - 1, step=version)
                    for i in range(10)]
        ids = store.add_episodes(episodes)
        store.add_adapter_version(AdapterVersion(worker=name, version=version, parent=version - 1, path="-", run_id=None,
                                                 step=version, final=True), ids)
        store.add_eval(EvalResult(worker=name, adapter_version=version, job="job", n=10, score=heldout[version]))


def test_a_widening_gap_between_training_reward_and_heldout_is_flagged(tmp_path, store_url):
    store = Store(tmp_path, store_url)
    _worker(store, "honest", rewards=[0.2, 0.5, 0.8], heldout=[0.2, 0.5, 0.8, 0.8])
    _worker(store, "hacker", rewards=[0.2, 0.6, 0.9], heldout=[0.2, 0.2, 0.3, 0.3])
    gaps = {g["worker"]: g for g in reward_gaps(store, gap_alarm=0.15)}
    assert not gaps["honest"]["flag"] and gaps["hacker"]["flag"]
    points = gaps["hacker"]["points"]
    assert [p["adapter_version"] for p in points] == [0, 1, 2, 3]
    assert points[0]["gap"] == 0.0 and abs(points[2]["gap"] - 0.6) < 1e-9  # v2's rollouts: reward 0.9, held-out 0.3


def test_training_reward_belongs_to_the_version_that_sampled_the_rollouts(tmp_path, store_url):
    store = Store(tmp_path, store_url)
    _worker(store, "w", rewards=[0.2, 0.6], heldout=[0.1, 0.3, 0.5])
    points = {p["adapter_version"]: p for p in reward_gaps(store, gap_alarm=0.15)[0]["points"]}
    assert abs(points[0]["train_reward"] - 0.2) < 1e-9 and abs(points[1]["train_reward"] - 0.6) < 1e-9  # not copied
    assert points[2]["train_reward"] is None and points[2]["gap"] is None  # the last version sampled nothing yet
    text = write_report(store, tmp_path / "report") and (tmp_path / "report" / "report.md").read_text()
    assert "| w | job | 2 | - | 0.500 | - |" in text


def test_learning_curve_starts_at_step_0_with_the_core_score(tmp_path, store_url):
    store = Store(tmp_path, store_url)
    _worker(store, "w", rewards=[0.2, 0.6], heldout=[0.1, 0.3, 0.5])
    curve = learning_curves(store)["w"]
    assert curve["steps"][0] == 1 and min(curve["heldout"]) == (0, 0.1)  # episodes of step s sit at s


def test_report_without_core_versions_draws_no_retention_plot(tmp_path, store_url):
    store = Store(tmp_path / "hive", store_url)
    _worker(store, "w", rewards=[0.2], heldout=[0.1, 0.4])
    files = write_report(store, tmp_path / "report")["files"]
    assert not any(f.endswith("retention.png") for f in files)
    assert "No core versions yet" in (tmp_path / "report" / "report.md").read_text()


def test_report_files_and_matrix(tmp_path, store_url):
    store = Store(tmp_path / "hive", store_url)
    _worker(store, "w", rewards=[0.2, 0.5], heldout=[0.1, 0.4, 0.6])
    matrix = forgetting_matrix(store)
    assert matrix["rows"] == ["core v0", "worker w"] and matrix["scores"] == [[0.1], [0.6]]
    figures = write_report(store, tmp_path / "report")
    assert len(figures["files"]) == 3 and "Reward hacking" in (tmp_path / "report" / "report.md").read_text()
