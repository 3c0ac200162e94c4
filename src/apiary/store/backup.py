"""Backup and restore of a SQLite hive: one .tar.gz holding a consistent snapshot of the store and the
artifacts its rows point at.

The store is copied with SQLite's online backup API (a consistent snapshot while a server or a `learn`
keeps writing); the artifact directories copied are those the snapshot's rows name. Recorded artifacts
are never rewritten (a new version is a new directory), so copying them after the snapshot still
matches it; each carries the MANIFEST.json it was written with, so `apiary check` verifies a restored
hive file by file. Each worker's checkpoint (state.json, optimizer.pt) goes along, so an unfinished run
can resume after a restore, and so do the documents added to workers through the server
(store.documents). A PostgreSQL store is backed up with `pg_dump`, not here.
"""

from __future__ import annotations

import os
import sqlite3
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine

from apiary.store.check import read_rows
from apiary.store.swap import PARTS, finish_interrupted, staging, swap



@dataclass(frozen=True)
class BackupResult:
    path: str
    adapters: int
    cores: int
    bytes: int


def backup(root: Path, out: Path, url: str | None = None) -> BackupResult:
    """Write a backup of the hive at `root` to the file `out` (a .tar.gz, replaced atomically)."""
    if url is not None and not url.startswith("sqlite"):
        raise ValueError("this store is a database server (PostgreSQL): back it up with `pg_dump`, and the artifact "
                         "directory with your file backups; `apiary backup` handles SQLite hives")
    database = root / "hive.db"
    if not database.is_file():
        raise FileNotFoundError(f"no hive.db in {root}: nothing to back up")
    if out.is_dir():
        raise ValueError(f"{out} is a directory; give the backup file to write, e.g. {out / 'hive.tar.gz'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".apiary-backup.", dir=out.parent) as scratch:
        snapshot = Path(scratch) / "hive.db"
        _snapshot(database, snapshot)
        engine = create_engine(f"sqlite:///{snapshot}")
        try:
            rows = read_rows(engine)
        finally:
            engine.dispose()
        partial = Path(scratch) / "backup.tar.gz"
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(snapshot, arcname="hive.db")
            for worker, version in sorted(rows.adapters):
                _add(tar, root, Path("adapters") / worker / f"v{version}")
            for version in sorted(rows.cores):
                _add(tar, root, Path("cores") / f"v{version}")
            checkpoints = root / "checkpoints"
            for directory in sorted(checkpoints.iterdir()) if checkpoints.is_dir() else []:
                for name in ("state.json", "optimizer.pt"):
                    _add(tar, root, Path("checkpoints") / directory.name / name)
            _add(tar, root, Path("documents"))
        os.replace(partial, out)
    return BackupResult(path=str(out), adapters=len(rows.adapters), cores=len(rows.cores), bytes=out.stat().st_size)


def _snapshot(database: Path, copy: Path) -> None:
    """SQLite's online backup: a consistent copy of the database while others may be writing it."""
    source, target = sqlite3.connect(database), sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def _add(tar: tarfile.TarFile, root: Path, relative: Path) -> None:
    """Add root/relative (a file or a directory) if it exists; a row whose artifact is missing is
    backed up as it is (`apiary check` on the restored hive reports it, as on this one)."""
    if (root / relative).exists():
        tar.add(root / relative, arcname=relative.as_posix())


def restore(archive: Path, root: Path, force: bool = False) -> None:
    """Make the hive at `root` the one backed up in `archive`. A hive that is not empty is refused unless
    `force`, which replaces its store and artifacts (other files there, e.g. reports, are left). The backup
    is unpacked and checked in a staging directory inside the hive first, then swapped in part by part
    with a journal (store.swap): killed at any moment, the hive is the old one or the new one, whole. Run
    it while nothing else uses the hive."""
    if not archive.is_file():
        raise FileNotFoundError(f"no backup file {archive}")
    finish_interrupted(root)  # what an earlier restore, killed, left
    if root.exists() and any(root.iterdir()) and not force:
        raise ValueError(f"{root} is not empty: restore refuses to overwrite a hive (--force replaces its store and "
                         "artifacts with the backup's)")
    root.mkdir(parents=True, exist_ok=True)
    with staging(root) as directory:
        _unpack(archive, directory / "new")
        _check_database(directory / "new" / "hive.db", archive)
        _repoint(directory / "new" / "hive.db", root)
        swap(directory, root)


def _unpack(archive: Path, staging: Path) -> None:
    """Extract a backup, refusing anything but a hive's parts (and, by the "data" filter, links out,
    absolute paths and device files)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            stray = [m.name for m in members if Path(m.name).parts[:1] not in [(p,) for p in PARTS]]
            if stray or "hive.db" not in {m.name for m in members}:
                raise ValueError(f"{archive} is not an apiary backup (no hive.db, or other files: {', '.join(stray[:3])})")
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, EOFError) as err:
        raise ValueError(f"{archive} is not a readable backup: {err}") from None


def _check_database(database: Path, archive: Path) -> None:
    """The unpacked database is whole (SQLite's integrity check) and holds a hive's rows."""
    try:
        db = sqlite3.connect(database)
        try:
            problems = [r[0] for r in db.execute("PRAGMA integrity_check")]
        finally:
            db.close()
        engine = create_engine(f"sqlite:///{database}")
        try:
            read_rows(engine)
        finally:
            engine.dispose()
    except Exception as err:  # noqa: BLE001 - whatever a bad file makes SQLite or SQLAlchemy raise: refused, not a crash
        raise ValueError(f"{archive} holds a database that cannot be read: {str(err).splitlines()[0][:200]}") from None
    if problems != ["ok"]:
        raise ValueError(f"{archive} holds a damaged database: {'; '.join(problems[:3])}")


def _repoint(database: Path, root: Path) -> None:
    """Rows record artifact paths; point them at the restored hive's own directories."""
    base = root.resolve()
    db = sqlite3.connect(database)
    try:
        with db:  # one transaction
            db.execute("UPDATE adapter_versions SET path = ? || '/adapters/' || worker || '/v' || version", (str(base),))
            db.execute("UPDATE core_versions SET path = ? || '/cores/v' || version", (str(base),))
    finally:
        db.close()
