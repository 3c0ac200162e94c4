"""The one rule for names that become folders or keys in a hive (workers, tenants), and the check
that every artifact path stays inside the hive.

A worker's name becomes a folder (`adapters/NAME/vN`, `checkpoints/NAME`); a tenant's name is the key
that decides whose workers, replies and feedback a request may reach. Both are checked where they
enter (the command line, the Python API, the store, the server's keys file), so that a name such as
"../../escaped" is refused before anything is written, rather than writing outside the hive.
"""

from __future__ import annotations

import re
from pathlib import Path

NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RULE_TEXT = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"


class BadName(ValueError):
    """A worker or tenant name outside the name rule; the message says which name and the rule."""


def check_name(name: object, what: str = "worker") -> str:
    """`name` if it follows the rule (`what` names the kind in the error: worker, tenant), else BadName."""
    if not isinstance(name, str) or NAME_RULE.fullmatch(name) is None:
        raise BadName(f"{what} name {name!r} is not allowed: use {RULE_TEXT}")
    return name


def inside(root: Path, path: Path) -> Path:
    """`path` if, resolved (links followed, '..' folded), it lies inside `root`; else ValueError. The
    last guard for a name that reached a path without passing `check_name` (a hive made before the rule)."""
    base = root.resolve()
    resolved = path.resolve()
    if resolved != base and base not in resolved.parents:
        raise ValueError(f"refusing the path {path}: it leads outside the hive {root}")
    return path
