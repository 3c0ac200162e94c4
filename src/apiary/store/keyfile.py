"""A secret kept in a file of the hive (the key the browser pages sign sessions with). Its own module, apart
from `artifacts`, so that opening a store imports no torch."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path


def read_or_make_secret(path: Path, size: int = 32) -> bytes:
    """The random secret kept in `path`, made on first use (mode 0600). Processes that race to make it all
    end up with one secret: each writes its own to a private temporary file and links it into place, and
    the link of every process but the first fails, so they read the first one's."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(size))
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: its secret is the hive's
        finally:
            Path(tmp).unlink(missing_ok=True)
    data = path.read_bytes()
    if len(data) < 16:
        raise ValueError(f"{path} holds {len(data)} bytes, too short for a secret: delete it and a new one is made "
                         "(everyone signed in to the pages signs in again)")
    return data
