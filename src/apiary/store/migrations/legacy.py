"""Bring a hive made before Alembic (tables made by `create_all`, no alembic_version) to revision 0001.

apiary used to migrate in place at every open: create missing tables, add missing nullable columns,
and (SQLite) rebuild `episodes` with a nullable score. Those steps run once more here, against the
frozen tables of revision 0001, after which Alembic stamps the hive and takes over."""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.schema import CreateIndex, CreateTable

from apiary.store.migrations import baseline


def bring_to_baseline(engine: Engine) -> None:
    """Make an old hive's tables those of revision 0001, keeping every row and id."""
    baseline.metadata.create_all(engine, checkfirst=True)
    _add_missing_columns(engine)
    _allow_unscored_episodes(engine)


def _add_missing_columns(engine: Engine) -> None:
    """Hives made by an older apiary lack newer (nullable) columns; add them in place."""
    inspector = inspect(engine)
    with engine.begin() as db:
        for table in baseline.metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present and column.nullable:
                    kind = column.type.compile(dialect=engine.dialect)
                    db.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


def _allow_unscored_episodes(engine: Engine) -> None:
    """Hives made before served episodes existed have `episodes.score NOT NULL`; make it nullable
    (SQLite cannot alter a column: rebuild the table, keeping every row and id)."""
    score = next(c for c in inspect(engine).get_columns("episodes") if c["name"] == "score")
    if score["nullable"]:
        return
    if engine.url.get_backend_name() != "sqlite":
        with engine.begin() as db:
            db.execute(text("ALTER TABLE episodes ALTER COLUMN score DROP NOT NULL"))
        return
    table = baseline.episodes
    columns = ", ".join(f'"{c.name}"' for c in table.columns)
    create = str(CreateTable(table).compile(dialect=engine.dialect)).replace("TABLE episodes", "TABLE episodes_new", 1)
    indexes = [str(CreateIndex(index).compile(dialect=engine.dialect)) for index in table.indexes]
    script = ["PRAGMA foreign_keys=OFF", "BEGIN", create, f"INSERT INTO episodes_new ({columns}) SELECT {columns} FROM episodes",
              "DROP TABLE episodes", "ALTER TABLE episodes_new RENAME TO episodes", *indexes, "COMMIT", "PRAGMA foreign_keys=ON"]
    raw = engine.raw_connection()  # SQLite's documented way: new table, copy, drop, rename the new one
    try:
        raw.driver_connection.executescript(";\n".join(script) + ";")
    finally:
        raw.close()
