"""Leases in the store: work that must run once, however many processes could do it.

Several `apiary serve` replicas on one store each run background learning; a worker's learning run must
still happen once, not once per replica. Whoever holds the lease `learn:WORKER` learns it; the others
skip the worker until the lease is free. A lease lasts `seconds` and is renewed while its work runs
(`held`), so a holder that dies (killed, machine lost) frees it within `seconds`, and the work is taken
up by another process on its next round.

Taking is one conditional UPDATE (free, expired, or ours already) or, for a lease never taken, one
INSERT that the primary key lets only one process win: atomic on SQLite (one writer at a time) and on
PostgreSQL (a second UPDATE of the same row waits for the first and re-checks its condition). Times are
the processes' clocks: keep `seconds` well above the clock skew between machines.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import delete, insert, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from apiary.store.schema import leases

log = logging.getLogger("apiary.store")


def holder_id() -> str:
    """A name for this process as a lease holder: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def take(engine: Engine, name: str, holder: str, seconds: float, now: float | None = None) -> bool:
    """Take (or renew) the lease `name` for `seconds`: True if `holder` holds it now."""
    if not seconds > 0:
        raise ValueError(f"a lease lasts a number of seconds > 0, got {seconds!r}")
    now = time.time() if now is None else now
    with engine.begin() as db:
        taken = db.execute(update(leases)
                           .where(leases.c.name == name, or_(leases.c.holder == holder, leases.c.expires <= now))
                           .values(holder=holder, expires=now + seconds)).rowcount
    if taken:
        return True
    try:
        with engine.begin() as db:
            db.execute(insert(leases).values(name=name, holder=holder, expires=now + seconds))
    except IntegrityError:  # it exists and someone else holds it (or just took it)
        return False
    return True


def give_up(engine: Engine, name: str, holder: str) -> None:
    """Free the lease if `holder` holds it (nothing happens otherwise)."""
    with engine.begin() as db:
        db.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))


@contextmanager
def held(engine: Engine, name: str, holder: str, seconds: float) -> Iterator[bool]:
    """Try to take the lease for the `with` block: yields whether it was taken. While the block runs the lease
    is renewed every `seconds` / 3 from a thread; at its end the lease is given up."""
    if not take(engine, name, holder, seconds):
        yield False
        return
    done = threading.Event()

    def renew() -> None:
        while not done.wait(seconds / 3):
            try:
                if not take(engine, name, holder, seconds):
                    log.warning("lease %s was taken by another process while %s held it (stalled past its %g s?)",
                                name, holder, seconds)
            except Exception:  # noqa: BLE001 - the store was briefly unreachable: try again next time
                log.exception("renewing lease %s failed", name)

    renewer = threading.Thread(target=renew, name=f"apiary-lease-{name}", daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        done.set()
        renewer.join()
        give_up(engine, name, holder)
