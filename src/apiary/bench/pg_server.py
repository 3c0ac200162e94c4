"""A throwaway PostgreSQL server from the machine's own binaries, for the tests and the store benchmark:
`initdb` into a temporary directory, `pg_ctl start` on a free loopback port, `pg_ctl stop` and the
directory removed afterwards. PostgreSQL refuses to run as root, so as root it runs as the `postgres`
user (`runuser -u postgres --`). Nothing is installed here: without the binaries, `PostgresUnavailable`
says what is missing (the tests skip with that reason)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

SEARCHED = ["/usr/lib/postgresql/*/bin"]  # Debian's layout; PATH is searched first
USER = "apiary"  # the database superuser initdb makes (trust authentication on loopback only)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries (or no user to run them as) on this machine."""


def binaries() -> Path:
    """The directory holding initdb and pg_ctl."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    for directory in sorted(glob.glob(SEARCHED[0]), reverse=True):  # the newest version first
        if (Path(directory) / "initdb").is_file():
            return Path(directory)
    raise PostgresUnavailable("no PostgreSQL binaries (initdb, pg_ctl) on PATH or under /usr/lib/postgresql/*/bin: "
                              "apt-get install postgresql")


@dataclass
class Server:
    """A running throwaway server: its data directory, port and the command prefix it runs under."""
    directory: Path
    port: int
    run_as: list[str]
    bin: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/postgres"

    def schema_url(self, name: str) -> str:
        """A URL whose tables live in schema `name` (made here): a fresh, empty store per test, cheaply."""
        self.sql(f'CREATE SCHEMA IF NOT EXISTS "{name}"')
        return f"{self.url}?options=-csearch_path%3D{name}"

    def sql(self, statement: str) -> None:
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with engine.connect() as db:
            db.execute(text(statement))

    def stop(self) -> None:
        subprocess.run([*self.run_as, str(self.bin / "pg_ctl"), "stop", "-D", str(self.directory / "data"), "-m", "fast",
                        "-s"], check=False, capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)


def start() -> Server:
    """Start a throwaway server; the caller stops it (`Server.stop`)."""
    bin_dir = binaries()
    run_as = _run_as()
    directory = Path(tempfile.mkdtemp(prefix="apiary-pg-"))  # under /tmp: the postgres user can reach it
    if run_as:
        shutil.chown(directory, "postgres")
    data, port = directory / "data", _free_port()
    try:
        _run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "--locale=C",
              "--encoding=UTF8", "--no-sync"])
        options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        _run([*run_as, str(bin_dir / "pg_ctl"), "start", "-D", str(data), "-w", "-s", "-l", str(directory / "log"),
              "-o", options])
    except PostgresUnavailable:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return Server(directory, port, run_as, bin_dir)


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root and there is no `postgres` user to run PostgreSQL as") from None
    return ["runuser", "-u", "postgres", "--"]


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise PostgresUnavailable(f"PostgreSQL did not start: "
                                  f"{' '.join(command)}: {(done.stderr or done.stdout).strip()[-500:]}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
