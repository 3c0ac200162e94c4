"""Replacing a hive's parts (hive.db, adapters, cores, checkpoints) with new ones so that, whenever the
process is killed, the hive is either the old one or the new one, whole.

No single rename replaces four entries, so the swap keeps a journal in a staging directory inside the
hive, `.restore.XXXX/`, as SQLite keeps a hot journal:
- the new parts are unpacked and checked in `new/` while the hive is untouched; a kill here leaves the
  old hive whole and a staging directory that is simply removed;
- then the file `READY` is written (the commit point), and each part is swapped by two renames: the
  old part into `old/`, the new one into place;
- last the staging directory (with the old parts) is removed.
A kill after READY leaves a swap to finish: whoever next opens the hive (`Store`, `apiary check
--repair`, the next restore) rolls it forward, so the hive is the new one, whole. A swap that fails in
its own process (a rename refused) is rolled back there, and the old hive stays. The directory is held
with an exclusive lock while the swap runs, so nobody finishes or removes a swap that is still running.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PARTS = ("hive.db", "adapters", "cores", "checkpoints", "documents")  # what a backup holds, and what restore --force replaces
PREFIX = ".restore."
READY = "READY"


@contextmanager
def staging(root: Path) -> Iterator[Path]:
    """A locked staging directory inside the hive; `new/` is where the new parts go. Removed on the way
    out (after a swap, or when anything before it failed), unless a swap is left committed (a roll back
    that failed too): then it holds parts of the hive, and the next open finishes it."""
    directory = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    lock = _lock(directory, wait=True)
    try:
        (directory / "new").mkdir()
        yield directory
    finally:
        if not (directory / READY).exists():
            shutil.rmtree(directory, ignore_errors=True)
        os.close(lock)


def swap(directory: Path, root: Path) -> None:
    """Commit (write READY) and put every new part in place of the old one; rolled back if a rename fails."""
    for part in PARTS[1:]:  # every part is swapped, an empty one where the new hive has none
        (directory / "new" / part).mkdir(exist_ok=True)
    (directory / "old").mkdir()
    _durable(directory / READY)
    try:
        _roll_forward(directory, root)
    except Exception as err:
        try:
            _roll_back(directory, root)
        except Exception as undo:  # noqa: BLE001 - the first error is the one to report; the swap stays committed
            err.add_note(f"the swap could not be rolled back either ({undo}): the next command that opens the hive "
                         "(or `apiary check --repair`) finishes it")
        raise


def finish_interrupted(root: Path) -> list[str]:
    """Finish or remove what a killed swap left in the hive: a committed swap is rolled forward (the hive
    becomes the new one), an uncommitted staging directory is removed (the old hive was never touched).
    Swaps still running (their directory locked) are left alone. Returns the directories dealt with."""
    done = []
    for directory in sorted(root.glob(PREFIX + "*")) if root.is_dir() else []:
        if not directory.is_dir():
            continue
        try:
            lock = _lock(directory, wait=False)
        except BlockingIOError:
            continue  # a restore is running now
        try:
            if (directory / READY).is_file():
                _roll_forward(directory, root)
            shutil.rmtree(directory)
            done.append(str(directory))
        finally:
            os.close(lock)
    return done


def interrupted(root: Path) -> list[tuple[Path, bool]]:
    """Staging directories in the hive, each with whether its swap was committed (READY)."""
    return [(d, (d / READY).is_file()) for d in sorted(root.glob(PREFIX + "*")) if d.is_dir()] if root.is_dir() else []


def _roll_forward(directory: Path, root: Path) -> None:
    """Each part not yet swapped: the old one (hive.db with its write-ahead log, never to be read with the
    new database) into old/, the new one into place. Every step can be repeated after a kill: a part
    already moved is not there to move again."""
    for part in PARTS:
        new = directory / "new" / part
        if not new.exists():
            continue  # swapped already
        for name in _with_log(part):
            if (root / name).exists() and not (directory / "old" / name).exists():
                _move(root / name, directory / "old" / name)
        _move(new, root / part)
    (directory / READY).unlink()  # done: a kill while the rest is removed leaves nothing to finish


def _roll_back(directory: Path, root: Path) -> None:
    """Undo the swaps done so far: each new part back into new/, each old part back into place."""
    for part in reversed(PARTS):
        new = directory / "new" / part
        if not new.exists() and (root / part).exists():
            os.replace(root / part, new)
        for name in _with_log(part):
            if (directory / "old" / name).exists():
                os.replace(directory / "old" / name, root / name)
    (directory / READY).unlink(missing_ok=True)


def _with_log(part: str) -> tuple[str, ...]:
    return (part, part + "-wal", part + "-shm") if part == "hive.db" else (part,)


def _move(source: Path, target: Path) -> None:
    """One step of the swap: a rename (atomic within the hive's file system)."""
    os.replace(source, target)


def _durable(path: Path) -> None:
    """Create `path` and make it (and the new parts before it) reach the disk before anything is moved."""
    os.sync()
    with open(path, "w") as f:
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(directory: Path, wait: bool) -> int:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BaseException:
        os.close(fd)
        raise
    return fd
