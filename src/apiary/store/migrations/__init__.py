"""The store's schema versions: Alembic revisions in `versions/`, run at every open, for SQLite and
PostgreSQL alike. A fresh store gets every revision; an old hive made before Alembic is brought to the
baseline in place (`legacy.py`) and stamped; a store at a revision this apiary does not know (made by a
newer apiary) is refused with one clear error, nothing written."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from apiary.store.migrations.legacy import bring_to_baseline

HERE = Path(__file__).parent
MIGRATION_LOCK = 0x61706961  # PostgreSQL advisory lock held while migrating (SQLite: BEGIN IMMEDIATE)


class SchemaTooNew(ValueError):
    """The store was migrated by a newer apiary than this one."""


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(HERE))


def head() -> str:
    """The newest revision this apiary knows."""
    return _scripts().get_current_head()


def known() -> set[str]:
    """Every revision this apiary knows."""
    return {s.revision for s in _scripts().walk_revisions()}


def current(engine: Engine) -> str | None:
    """The store's revision (None: a new store, or an old hive made before Alembic)."""
    with engine.connect() as db:
        return MigrationContext.configure(db).get_current_revision()


def upgrade(engine: Engine, shown_url: str) -> None:
    """Bring the store at `engine` to the newest revision (nothing to do if it is there already)."""
    revision = current(engine)
    if revision == head():
        return
    if revision is not None and revision not in known():
        raise SchemaTooNew(f"the store at {shown_url} is at schema revision {revision}, which this apiary does not know "
                           f"(it knows up to {head()}): a newer apiary wrote it; upgrade apiary to open it")
    if revision is None and "episodes" in inspect(engine).get_table_names():
        bring_to_baseline(engine)  # made before Alembic: today's tables, in place, then stamped by 0001
    with engine.connect() as db:  # one opener migrates; the others wait for it here, then find nothing to do
        if engine.dialect.name == "sqlite":
            db.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock before reading the revision (busy timeout)
        elif engine.dialect.name == "postgresql":
            db.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        config = Config()
        config.set_main_option("script_location", str(HERE))
        config.attributes["connection"] = db
        command.upgrade(config, "head")
        db.commit()
