"""API keys and the tenants they belong to.

Keys come from a TOML file (`[keys]` table of "KEY" = "TENANT") or from the environment variable
APIARY_KEYS ("KEY=TENANT,KEY=TENANT"). Without keys the server has one tenant, the local one, and
binds to localhost only. Keys are compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
import os
import tomllib
from pathlib import Path

from apiary.store.names import BadName, check_name
from apiary.store.store import LOCAL_TENANT

KEYS_ENV = "APIARY_KEYS"


class Unauthorized(Exception):
    """A request without a valid API key."""


class Tenants:
    def __init__(self, keys: dict[str, str] | None = None):
        self.keys = dict(keys or {})

    @property
    def open(self) -> bool:
        """No keys: every request is the local tenant's (localhost only)."""
        return not self.keys

    def tenant(self, authorization: str | None) -> str:
        """The tenant of an `Authorization: Bearer KEY` header; Unauthorized if there is none or it is wrong."""
        if self.open:
            return LOCAL_TENANT
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("missing API key: send the header 'Authorization: Bearer YOUR_KEY'")
        given = authorization[7:].strip().encode()
        for key, tenant in self.keys.items():
            if hmac.compare_digest(given, key.encode()):
                return tenant
        raise Unauthorized("invalid API key")


def load_tenants(path: str | Path | None = None, env: dict | None = None) -> Tenants:
    """Keys from `path` (TOML), else from $APIARY_KEYS, else none. Errors name the file and say what is wrong
    (never the keys)."""
    env = os.environ if env is None else env
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"keys file {path} does not exist") from None
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"keys file {path}: not valid TOML ({err})") from None
        keys = data.get("keys")
        if not isinstance(keys, dict) or not keys:
            raise ValueError(f'keys file {path}: expected a [keys] table of "KEY" = "TENANT" entries')
        return Tenants(_checked(keys, str(path)))
    if env.get(KEYS_ENV):
        pairs = [p.strip() for p in env[KEYS_ENV].split(",") if p.strip()]
        if any("=" not in p for p in pairs):
            raise ValueError(f"{KEYS_ENV}: expected KEY=TENANT pairs separated by commas")
        return Tenants(_checked(dict(p.split("=", 1) for p in pairs), KEYS_ENV))
    return Tenants()


def _checked(keys: dict, where: str) -> dict[str, str]:
    """Every entry has a key and a tenant name that follows the name rule (store.names)."""
    for n, (key, tenant) in enumerate(keys.items(), start=1):
        if not isinstance(tenant, str) or not tenant.strip() or not str(key).strip():
            raise ValueError(f"{where}: entry {n} needs a non-empty key and a tenant name")
        try:
            check_name(tenant.strip(), "tenant")
        except BadName as err:
            raise ValueError(f"{where}: entry {n}: {err}") from None
    return {str(k).strip(): v.strip() for k, v in keys.items()}
