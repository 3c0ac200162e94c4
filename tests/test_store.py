import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from apiary.store.artifacts import write_dir
from apiary.store.export import export, table_batches
from apiary.store.records import AdapterVersion, Episode, EvalResult, Run
from apiary.store.store import Store


def episode(i, worker="w", version=0):
    return Episode(job="j", task_id=f"t{i}", messages=[{"role": "user", "content": f"q{i}"}], completion=str(i),
                   score=i % 2, worker=worker, adapter_version=version)


def fill(store):
    store.ensure_worker("w", "j", "core", {"name": "j"})
    run = store.start_run(Run(worker="w", job="j", learner="grpo"))
    ids = store.add_episodes([episode(i) for i in range(4)])
    v1 = AdapterVersion(worker="w", version=1, parent=0, path="a/v1", run_id=run, step=1)
    store.add_adapter_version(v1, ids[:2])
    v2 = AdapterVersion(worker="w", version=2, parent=1, path="a/v2", run_id=run, step=2, final=True)
    store.add_adapter_version(v2, ids[2:])
    store.add_eval(EvalResult(worker="w", adapter_version=2, job="j", n=3, score=0.5, details={"scores": [1, 0, 0.5]}))
    return ids


def test_episodes_round_trip(tmp_path, store_url):
    store = Store(tmp_path, store_url)
    ids = fill(store)
    again = Store(tmp_path, store_url).episodes(worker="w")
    assert [e.id for e in again] == ids
    assert again[1].messages == [{"role": "user", "content": "q1"}] and again[1].score == 1.0
    assert store.count_episodes("w") == 4


def test_provenance_includes_ancestors(tmp_path, store_url):
    store = Store(tmp_path, store_url)
    ids = fill(store)
    assert store.trained_on("w", 1) == ids[:2]
    assert store.trained_on("w", 2) == ids
    assert store.worker("w").latest_version == 2


def test_worker_cannot_switch_jobs(tmp_path, store_url):
    store = Store(tmp_path, store_url)
    store.ensure_worker("w", "j", "core", {})
    try:
        store.ensure_worker("w", "other", "core", {})
    except ValueError as err:
        assert "already works on job" in str(err)
    else:
        raise AssertionError("expected a refusal")


def test_export_parquet_and_jsonl(tmp_path, store_url):
    store = Store(tmp_path / "hive", store_url)
    fill(store)
    written = export(store, tmp_path / "pq", "parquet")
    table = pq.read_table(written["episodes"]["path"])
    assert table.num_rows == 4 and table.column("messages")[0].as_py()[0] == {"role": "user", "content": "q0"}
    assert pq.read_table(written["adapter_episodes"]["path"]).num_rows == 4
    written = export(store, tmp_path / "js", "jsonl")
    lines = open(written["evals"]["path"]).read().splitlines()
    assert json.loads(lines[0])["score"] == 0.5


def test_exported_messages_are_lists_of_role_and_content_not_json_text(tmp_path, store_url):
    store = Store(tmp_path / "hive", store_url)
    fill(store)
    table = pq.read_table(export(store, tmp_path / "pq", "parquet")["episodes"]["path"])
    kind = table.schema.field("messages").type
    fields = [(f.name, str(f.type)) for f in kind.value_type]
    assert pa.types.is_list(kind) and fields == [("role", "string"), ("content", "string")]
    rows = [json.loads(line) for line in open(export(store, tmp_path / "js", "jsonl")["episodes"]["path"])]
    assert rows[0]["messages"] == [{"role": "user", "content": "q0"}]


def test_exported_and_atomically_written_files_follow_the_umask(tmp_path, store_url):
    import os
    import stat

    from apiary.store.artifacts import atomic_write_bytes, staging_dir

    umask = os.umask(0o022)
    os.umask(umask)
    store = Store(tmp_path / "hive", store_url)
    fill(store)
    for info in export(store, tmp_path / "out", "jsonl").values():
        assert stat.S_IMODE(os.stat(info["path"]).st_mode) == 0o666 & ~umask  # 0644 under umask 022, not 0600
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert stat.S_IMODE(os.stat(tmp_path / "a.bin").st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(os.stat(staging_dir(tmp_path / "adapter")).st_mode) == 0o777 & ~umask  # adapter directories


def test_export_of_empty_hive(tmp_path, store_url):
    written = export(Store(tmp_path / "hive", store_url), tmp_path / "out", "parquet")
    assert all(info["rows"] == 0 for info in written.values())
    assert pq.read_table(written["episodes"]["path"]).num_rows == 0


def test_a_directory_artifact_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "adapters" / "v1"

    def fill(staging, text):
        (staging / "weights").write_text(text)
        return staging

    write_dir(target, lambda staging: fill(staging, "first"))
    write_dir(target, lambda staging: fill(staging, "second"))
    assert (target / "weights").read_text() == "second"

    def broken(staging):
        (staging / "weights").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_dir(target, broken)
    assert (target / "weights").read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["v1"]  # no staging left behind


def test_a_hive_made_before_runs_recorded_their_budget_opens_and_keeps_its_runs(tmp_path):
    import sqlite3

    from apiary.store.records import RunBudget

    store = Store(tmp_path)
    store.ensure_worker("w", "j", "core", {"name": "j"})
    old = store.start_run(Run(worker="w", job="j", learner="grpo"))
    store.engine.dispose()
    with sqlite3.connect(tmp_path / "hive.db") as db:
        db.execute("ALTER TABLE runs DROP COLUMN budget")  # as an apiary of schema revision 0002 made it
        db.execute("UPDATE alembic_version SET version_num = '0002'")
    store = Store(tmp_path)
    assert store.unfinished_run("w").id == old and store.unfinished_run("w").budget is None
    new = store.start_run(Run(worker="w", job="j", learner="grpo", budget=RunBudget(steps=8, minutes=2.5)))
    run = store.unfinished_run("w")
    assert run.id == new and (run.budget.steps, run.budget.minutes, run.budget.from_step) == (8, 2.5, 0)
    runs = pq.read_table(export(store, tmp_path / "out", "parquet")["runs"]["path"]).to_pylist()
    assert runs[0]["budget"] is None and json.loads(runs[1]["budget"])["steps"] == 8


def test_the_hives_session_key_is_made_once_private_and_read_back_by_every_store(tmp_path):
    key = Store(tmp_path).session_secret()
    assert len(key) == 32 and Store(tmp_path).session_secret() == key
    assert (tmp_path / "session.key").stat().st_mode & 0o777 == 0o600
    (tmp_path / "session.key").write_bytes(b"short")
    with pytest.raises(ValueError, match="too short for a secret: delete it"):
        Store(tmp_path).session_secret()


def test_export_streams_in_bounded_batches_one_parquet_row_group_each(tmp_path, store_url):
    store = Store(tmp_path / "hive", store_url)
    store.add_episodes([episode(i) for i in range(5)])
    batches = list(table_batches(store, "episodes", batch_rows=2))
    assert [len(b) for b in batches] == [2, 2, 1] and [r["id"] for b in batches for r in b] == [1, 2, 3, 4, 5]
    written = export(store, tmp_path / "pq", "parquet", batch_rows=2)
    parquet = pq.ParquetFile(written["episodes"]["path"])
    assert written["episodes"]["rows"] == 5 and parquet.metadata.num_row_groups == 3
    assert parquet.read().column("task_id").to_pylist() == [f"t{i}" for i in range(5)]
    lines = open(export(store, tmp_path / "js", "jsonl", batch_rows=2)["episodes"]["path"]).read().splitlines()
    assert [json.loads(line)["completion"] for line in lines] == ["0", "1", "2", "3", "4"]


def test_report_figures_come_from_the_database_not_from_loading_every_episode(tmp_path, store_url, monkeypatch):
    from apiary.evals.curves import learning_curves
    from apiary.evals.reward_hacking import reward_gaps

    store = Store(tmp_path / "hive", store_url)
    store.ensure_worker("w", "j", "core", {"name": "j"})
    run = store.start_run(Run(worker="w", job="j", learner="grpo"))
    def rl(step, version, score):
        return Episode(job="j", task_id="t", messages=[], completion="", score=score, origin="rl", worker="w",
                       adapter_version=version, run_id=run, step=step)
    sampled_by_v0 = store.add_episodes([rl(0, 0, 1.0), rl(0, 0, 0.0)])
    sampled_by_v1 = store.add_episodes([rl(1, 1, 1.0), rl(1, 1, 1.0)])
    store.add_adapter_version(AdapterVersion(worker="w", version=1, parent=0, path="a/v1", run_id=run, step=1), sampled_by_v0)
    store.add_adapter_version(AdapterVersion(worker="w", version=2, parent=1, path="a/v2", run_id=run, step=2), sampled_by_v1)
    for version, score in ((1, 0.25), (2, 0.5)):
        store.add_eval(EvalResult(worker="w", adapter_version=version, job="j", n=2, score=score, details={}))
    for name in ("episodes", "episodes_by_id"):
        monkeypatch.setattr(Store, name, lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded every episode")))
    curve = learning_curves(store)["w"]
    assert curve["steps"] == [0, 1] and curve["reward"] == [0.5, 1.0]
    (gaps,) = reward_gaps(store, 0.15)
    assert [(p["adapter_version"], p["train_reward"], p["gap"]) for p in gaps["points"]] == [(1, 1.0, 0.75), (2, None, None)]
