"""Optional parts of apiary (pip extras) and the message that says which one to install.

Core installs load, learn, evaluate and consolidate; `serve` adds the HTTP server, `games` the
TextArena jobs, `bench` the peers `apiary bench` runs against, `postgres` the store in PostgreSQL,
`cluster` workers on a Ray cluster, `s3` artifacts in an S3 bucket (see pyproject.toml).
"""

from __future__ import annotations

import importlib.util


class MissingExtraError(ImportError):
    """A module of an optional part is not installed; the message names the pip extra to install."""


def require(extra: str, *modules: str) -> None:
    """Raise MissingExtraError naming `pip install 'apiary[extra]'` if any of `modules` is not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(f"{', '.join(missing)} not installed: pip install 'apiary[{extra}]' "
                                f"(this part of apiary needs the {extra} extra)")
