"""All file I/O of the hive goes through here: adapters, checkpoints, exports. Writes are atomic.
Checkpoints are read without unpickling arbitrary objects: a planted file cannot run code. A directory
artifact carries MANIFEST.json, the sha256 of each of its files, written with it (`apiary check` reads it)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

# The process's umask, read once at import (reading it means setting it, which is not thread-safe).
# mkstemp and mkdtemp make private files (0600) and directories (0700); what the hive writes gets the
# modes a plain open() or mkdir() would give (0644 and 0755 under the usual umask 022).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A file written whole or not at all: written (in as many pieces as the caller likes) under a temporary
    name beside `path`, then renamed over it; if the writing fails, the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as handle:
        handle.write(data)


def atomic_write_json(path: Path, value) -> None:
    atomic_write_bytes(path, json.dumps(value, indent=2, default=str).encode())


def read_json(path: Path):
    return json.loads(path.read_text())


class UnsafeCheckpoint(ValueError):
    """A checkpoint file holds something other than tensors, numbers, strings and containers of them."""


def write_tensors(path: Path, value) -> None:
    """Save tensors, numbers and strings in dicts, lists and tuples (an optimizer's state, a generator's)."""
    import torch  # here, not at the top: export and check read and write files without the model stack

    buffer = io.BytesIO()
    torch.save(value, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_tensors(path: Path):
    """What `write_tensors` saved, read with `weights_only=True`: torch's unpickler then builds only tensors,
    numbers, strings and containers, so a file that would build any other object (and so could run
    code) is refused with UnsafeCheckpoint instead of being executed."""
    import torch

    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        detail = next((line.strip() for line in str(err).splitlines() if "global" in line.lower()), "not a torch checkpoint")
        raise UnsafeCheckpoint(f"refusing to read the checkpoint {path}: it is not one apiary wrote (only tensors and "
                               f"numbers are read, never objects that could run code; {detail}). Delete it to start "
                               "that worker's optimizer afresh") from None


def replace_dir(staging: Path, target: Path) -> None:
    """Make `staging` the directory at `target` in one step (the old one, if any, is removed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def staging_dir(near: Path) -> Path:
    near.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{near.name}.", dir=near.parent))
    staging.chmod(0o777 & ~_UMASK)
    return staging


MANIFEST = "MANIFEST.json"  # in a directory artifact: {"sha256": {relative file path: hex digest}}


def write_dir(target: Path, fill: Callable[[Path], Path]) -> None:
    """Make the directory at `target` atomically: `fill(staging)` writes the files into a fresh
    staging directory beside it and returns the folder holding them (the staging directory or one
    inside it), which then gets its MANIFEST.json and replaces `target` in one step. A failed `fill`
    leaves `target` as it was; a kill leaves at most a staging directory (`.NAME.*`) beside it."""
    staging = staging_dir(target)
    try:
        folder = fill(staging)
        atomic_write_json(folder / MANIFEST, {"sha256": checksums(folder)})
        replace_dir(folder, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(folder: Path) -> dict[str, str]:
    """The sha256 of every file under `folder` (but its manifest), keyed by the path relative to it."""
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def recorded_checksums(folder: Path) -> dict[str, str] | None:
    """What the directory's MANIFEST.json recorded when it was written; None for one written before
    manifests existed or by hand."""
    path = folder / MANIFEST
    return read_json(path)["sha256"] if path.is_file() else None
