"""Opening the store's database: SQLite in the hive by default, PostgreSQL (or another SQLAlchemy URL)
when asked, migrated to this apiary's schema at open. Each way it can fail is one clear error that
names the URL (password hidden) and what to fix."""

from __future__ import annotations

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError

from apiary.store.migrations import upgrade

BUSY_TIMEOUT_MS = 60_000  # how long a SQLite writer waits for another process's write (serve, learn, learn) to end


class StoreUnreachable(ValueError):
    """The database URL names a store that cannot be opened (server down, wrong credentials, no driver)."""


def shown(url: str) -> str:
    """The URL as it may be printed: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an unreadable URL)"


def open_database(url: str) -> Engine:
    """An engine on `url`, its schema at this apiary's newest revision."""
    try:
        engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    except ArgumentError:
        raise StoreUnreachable(f"{url!r} is not a database URL: give one like sqlite:///PATH or "
                               "postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE") from None
    except ImportError as err:
        raise StoreUnreachable(f"the store {shown(url)} needs the database driver {err.name or err}: "
                               "pip install 'apiary[postgres]'") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        engine.connect().close()
    except (OperationalError, InterfaceError) as err:  # the server is not there, refuses us, or the file cannot be opened
        engine.dispose()
        first = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
        raise StoreUnreachable(f"cannot reach the store at {shown(url)}: {first}. Check that the database server runs "
                               "and that the URL's host, port, user, password and database are right (--store or "
                               "APIARY_STORE_URL); without either, the hive's own SQLite file is used") from None
    upgrade(engine, shown(url))
    return engine


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # a writer waits its turn instead of "database is locked"
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
