"""Client-side pacing: token buckets that wait for a token (pure, thread-safe).

A cloud that throttles with token buckets (ECS RunTask, Fly's Machines API)
answers a call over its rate with an error the SDK retries after a back-off; a
client that spends its tokens at the published rate instead makes no such call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping


class TokenBuckets:
    """Client-side limit: one token bucket per (action, identifier), the
    action's rate and burst from ``limits`` (else ``rate``/``burst``); waits
    for a token."""

    def __init__(self, rate: float, burst: int, *,
                 limits: Mapping[str, tuple[float, int]] | None = None, margin: float = 0.05,
                 monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.rate, self.burst, self.monotonic, self.sleep = rate, burst, monotonic, sleep
        self.margin = margin
        self.limits = dict(limits or {})
        self._buckets: dict[tuple, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: tuple) -> float:
        """Take one token for ``key`` = (action, identifier), sleeping if none is left; the time slept."""
        rate, burst = self.limits.get(key[0], (self.rate, self.burst))
        with self._lock:
            now = self.monotonic()
            tokens, at = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - at) * rate)
            # A little extra on a wait: the server's bucket starts when our first
            # request arrives, a moment after ours, and refills that much later.
            wait = 0.0 if tokens >= 1 else (1 - tokens) / rate + self.margin
            self._buckets[key] = (tokens - 1 + wait * rate, now + wait)
        if wait > 0:
            self.sleep(wait)
        return wait
