"""Per-tenant request rate limits: a token bucket per tenant, refilled evenly over the minute.

A tenant may send `requests_per_minute` requests in a burst and then one every 60/rpm seconds; a
request over that is answered 429 with Retry-After (whole seconds until a request would pass). One
tenant's burst never slows another tenant. Off (0) by default: a local server has one tenant.
The browser pages' sign-in uses one too, keyed by client address, and gives back the attempts that
signed in, so that only wrong keys count (apiary.web.actions).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable


class RateLimiter:
    def __init__(self, requests_per_minute: int, clock: Callable[[], float] = time.monotonic):
        if not isinstance(requests_per_minute, int) or requests_per_minute < 0:
            raise ValueError(f"requests_per_minute must be a whole number >= 0 (0: no limit), got {requests_per_minute!r}")
        self.capacity, self.per_second, self.clock = requests_per_minute, requests_per_minute / 60, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, when they were counted)
        self._lock = threading.Lock()

    def retry_after(self, tenant: str) -> int | None:
        """Take one request from the tenant's bucket: None if it may go ahead, else the seconds to wait."""
        if self.capacity == 0:
            return None
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.get(tenant, (float(self.capacity), now))
            tokens = min(float(self.capacity), tokens + (now - then) * self.per_second)
            if tokens >= 1:
                self._buckets[tenant] = (tokens - 1, now)
                return None
            self._buckets[tenant] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / self.per_second))

    def refund(self, key: str) -> None:
        """Give back the request just taken from `key`'s bucket (it turned out not to count)."""
        if self.capacity == 0:
            return
        with self._lock:
            tokens, then = self._buckets.get(key, (float(self.capacity), self.clock()))
            self._buckets[key] = (min(float(self.capacity), tokens + 1), then)
