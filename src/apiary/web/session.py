"""Who a browser is, and proof that a form came from our own page.

A browser cannot send `Authorization: Bearer KEY` on its own, so the pages sign a session cookie
instead: "TENANT:NONCE:SIG", where SIG is an HMAC of tenant and nonce under the hive's session key
(hive/session.key, made on first use: a restart, or another replica on the same hive, keeps everyone
signed in; deleting the file signs everyone out). A server without keys gives every visitor the local
tenant's session, but only when the page was asked for by a localhost name (a DNS-rebinding page
reaches 127.0.0.1 under its own name). With keys, /ui/login turns a key into a session; the key
itself is never stored in the cookie. Wrong keys are limited per client address (`Ui.sign_in`).

Forms are protected by a signed double submit: every page carries a token, HMAC("csrf:" NONCE),
in each form (and in an `X-CSRF-Token` header htmx adds); a POST whose token does not match the
session cookie's nonce is refused. Another site can make the browser send the cookie (it does not,
either: SameSite=Strict), but cannot read it, so it cannot write the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

COOKIE = "apiary_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass(frozen=True)
class Session:
    """A browser's session: its tenant ("" before signing in) and the nonce its CSRF token is made from."""

    tenant: str
    nonce: str


class Sessions:
    """Signs and reads session cookies and CSRF tokens with one secret (the hive's; a random one if none is given)."""

    def __init__(self, secret: bytes | None = None):
        self._secret = secret or secrets.token_bytes(32)

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def new(self, tenant: str) -> Session:
        return Session(tenant, secrets.token_hex(16))

    def cookie(self, session: Session) -> str:
        return f"{session.tenant}:{session.nonce}:{self._sign(session.tenant + ':' + session.nonce)}"

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie holds, or None if it is missing, malformed or not signed by this server."""
        parts = (cookie or "").split(":")
        if len(parts) != 3:
            return None
        tenant, nonce, sig = parts
        if not nonce or not hmac.compare_digest(sig, self._sign(tenant + ":" + nonce)):
            return None
        return Session(tenant, nonce)

    def csrf(self, session: Session) -> str:
        return self._sign("csrf:" + session.nonce)

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        return session is not None and bool(token) and hmac.compare_digest(token, self.csrf(session))


def local_host(host_header: str | None) -> bool:
    """Whether a Host header names this machine ("127.0.0.1:8000", "localhost", "[::1]:8000")."""
    host = (host_header or "").strip().lower()
    if host.startswith("["):
        host = host[: host.find("]") + 1]
    elif ":" in host:
        host = host.rsplit(":", 1)[0]
    return host in LOCAL_HOSTS
