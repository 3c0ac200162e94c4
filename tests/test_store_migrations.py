"""The store's schema versions (Alembic): a new store gets every revision, an old hive made before Alembic
opens with its rows kept, a store a newer apiary wrote is refused, and a database that cannot be reached
is one clear error naming its URL (password hidden). On SQLite and PostgreSQL alike."""

from __future__ import annotations

import socket

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, Table, create_engine, insert, inspect, text
from typer.testing import CliRunner

from apiary.cli import app
from apiary.store import migrations, schema
from apiary.store.database import StoreUnreachable
from apiary.store.migrations import SchemaTooNew, baseline
from apiary.store.records import Episode
from apiary.store.store import Store

DROPPED = {("episodes", "info"), ("episodes", "tenant"), ("workers", "tenant"), ("evals", "core_version")}


def _url(tmp_path, store_url) -> str:
    return store_url or f"sqlite:///{tmp_path / 'hive.db'}"


def _make_old_hive(url: str) -> None:
    """Tables as an apiary before Alembic made them: no alembic_version, episodes.score NOT NULL, some
    columns and the worker_releases table not yet there; one worker and one episode in it."""
    old = MetaData()
    for table in baseline.metadata.sorted_tables:
        if table.name != "worker_releases":
            columns = [Column(c.name, c.type, *[f.copy() for f in c.foreign_keys], primary_key=c.primary_key,
                              nullable=False if (table.name, c.name) == ("episodes", "score") else c.nullable)
                       for c in table.columns if (table.name, c.name) not in DROPPED]
            Table(table.name, old, *columns)
    engine = create_engine(url)
    old.create_all(engine)
    with engine.begin() as db:
        db.execute(insert(old.tables["workers"]).values(name="w", job="j", core="c", job_spec={}, created_at=text("CURRENT_TIMESTAMP")))
        db.execute(insert(old.tables["episodes"]).values(id=7, job="j", task_id="t", messages=[], completion="5", score=1.0,
                                                         worker="w", adapter_version=0, created_at=text("CURRENT_TIMESTAMP")))
    engine.dispose()


def test_an_old_hive_made_before_alembic_opens_with_its_rows_and_is_stamped_at_the_newest_revision(tmp_path, store_url):
    _make_old_hive(_url(tmp_path, store_url))
    store = Store(tmp_path, store_url)
    assert migrations.current(store.engine) == migrations.head()
    assert [e.id for e in store.episodes("w")] == [7] and store.worker("w").job == "j"
    (new,) = store.add_episodes([Episode(job="j", task_id="u", messages=[], completion="?", score=None, origin="serve",
                                         info={"turns": 1})])
    assert store.episode(new).score is None and store.episode(new).info == {"turns": 1}
    store.release_worker("w", 0, "learn")  # the worker_releases table was made
    assert Store(tmp_path, store_url).episode(7).completion == "5"  # opening again changes nothing


def test_a_new_store_has_exactly_the_tables_and_indexes_schema_py_declares(tmp_path, store_url):
    store = Store(tmp_path, store_url)
    with store.engine.connect() as db:
        differences = compare_metadata(MigrationContext.configure(db), schema.metadata)
    assert differences == []
    indexes = {i["name"] for i in inspect(store.engine).get_indexes("episodes")}
    assert {"ix_episodes_worker", "ix_episodes_worker_origin", "ix_episodes_run_id"} <= indexes


def test_a_store_at_a_newer_schema_revision_is_refused_with_one_clear_error(tmp_path, store_url):
    store = Store(tmp_path, store_url)
    with store.engine.begin() as db:
        db.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaTooNew, match="revision 9999, which this apiary does not know.*upgrade apiary"):
        Store(tmp_path, store_url)


def test_an_unreachable_database_is_one_clear_error_naming_the_url_without_its_password(tmp_path):
    pytest.importorskip("psycopg")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreUnreachable) as refused:
        Store(tmp_path, f"postgresql+psycopg://apiary:s3cret@127.0.0.1:{port}/hive")
    message = str(refused.value)
    assert f"apiary:***@127.0.0.1:{port}/hive" in message and "s3cret" not in message
    assert "Check that the database server runs" in message


def test_a_url_that_is_not_a_database_url_is_refused(tmp_path):
    with pytest.raises(StoreUnreachable, match="not a database URL"):
        Store(tmp_path, "not a url")


def test_cli_store_option_opens_the_database_it_names_and_refuses_one_it_cannot_reach(tmp_path, store_url, monkeypatch):
    monkeypatch.setenv("APIARY_STORE_URL", "")  # restored (unset) afterwards, whatever --store sets meanwhile
    Store(tmp_path / "hive", store_url).ensure_worker("w", "j", "c", {})
    given = ["--store", store_url] if store_url else []
    result = CliRunner().invoke(app, [*given, "status", "--hive", str(tmp_path / "hive"), "--json"])
    assert result.exit_code == 0 and '"w"' in result.output
    monkeypatch.setenv("APIARY_STORE_URL", "")
    result = CliRunner().invoke(app, ["--store", "sqlite:////nonexistent/dir/hive.db", "status", "--hive", str(tmp_path)])
    assert result.exit_code == 2 and "cannot reach the store at sqlite:////nonexistent/dir/hive.db" in result.output


def test_several_processes_opening_a_new_store_at_once_all_open_it(tmp_path, store_url):
    """Workers, servers and a CLI may all open a fresh store together: the first migrates it, the others
    wait (a transaction on SQLite, an advisory lock on PostgreSQL) and find it done."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(4) as pool:
        revisions = pool.starmap(_open_and_read_revision, [(str(tmp_path), store_url)] * 4)
    assert revisions == [migrations.head()] * 4


def _open_and_read_revision(hive: str, url: str | None) -> str:
    return migrations.current(Store(hive, url).engine)


def test_a_postgresql_url_without_its_driver_installed_names_the_extra_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if apiary[postgres] were not installed
    with pytest.raises(StoreUnreachable, match=r"needs the database driver psycopg: pip install 'apiary\[postgres\]'"):
        Store(tmp_path, "postgresql+psycopg://apiary:s3cret@127.0.0.1:5432/hive")
