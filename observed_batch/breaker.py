"""A circuit breaker per telemetry backend: a dead collector or Sentry costs one invocation, not all.

After a flush or export fails (or runs out of its share of the deadline budget) the breaker *opens*:
for ``backoff`` seconds the middleware that owns it produces nothing for that backend and waits for
nothing, and counts what it did not send. Once the backoff has passed, the next invocation is a
trial: it sends and flushes as usual. A trial that succeeds closes the breaker; one that fails opens
it again with the backoff doubled (30 s, 60 s, ... up to 5 min). One warning line when it opens, one
when it closes; nothing per invocation in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["DEFAULT_BASE_BACKOFF_S", "DEFAULT_MAX_BACKOFF_S", "Breaker"]

logger = logging.getLogger("observed_batch")

DEFAULT_BASE_BACKOFF_S = 30.0
DEFAULT_MAX_BACKOFF_S = 300.0


class Breaker:
    """Closed (sending), open (dropping until ``retry_at``), or half-open (one trial after the backoff).

    Thread-safe: exporters report from their own threads. ``failures`` and ``dropped`` only grow, so a
    middleware can take a snapshot before its flush and tell what that flush did.
    """

    __slots__ = ("_backoff_s", "_clock", "_lock", "_retry_at", "base_s", "dropped", "failures", "max_s", "name")

    def __init__(
        self,
        name: str,
        *,
        base_s: float = DEFAULT_BASE_BACKOFF_S,
        max_s: float = DEFAULT_MAX_BACKOFF_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.base_s = base_s
        self.max_s = max_s
        self._clock = clock
        self._lock = threading.Lock()
        self._backoff_s = 0.0
        #: Monotonic time until which the backend is left alone; ``None`` while closed.
        self._retry_at: float | None = None
        #: How many failures were reported, and how many items (spans, events) were not sent.
        self.failures = 0
        self.dropped = 0

    @property
    def is_open(self) -> bool:
        """True while backing off: send nothing, wait for nothing."""
        retry_at = self._retry_at
        return retry_at is not None and self._clock() < retry_at

    @property
    def backoff_s(self) -> float:
        """The current backoff (0 while closed)."""
        return self._backoff_s

    def failed(self, reason: str) -> None:
        """The backend failed or timed out: open; after a failed trial, open again for twice as long.
        Further failures reported while open (the rest of the same flush) change nothing."""
        with self._lock:
            self.failures += 1
            now = self._clock()
            if self._retry_at is not None and now < self._retry_at:
                return
            opening = self._retry_at is None
            self._backoff_s = self.base_s if opening else min(self._backoff_s * 2, self.max_s)
            self._retry_at = now + self._backoff_s
            backoff = self._backoff_s
        if opening:
            logger.warning(
                "observed_batch: %s backend unavailable (%s); its telemetry is dropped and counted for %.0f s,"
                " then retried with exponential backoff up to %.0f s",
                self.name,
                reason,
                backoff,
                self.max_s,
            )
        else:
            logger.debug("observed_batch: %s backend still down (%s); next try in %.0f s", self.name, reason, backoff)

    def succeeded(self) -> None:
        """The backend answered: close (a no-op while closed)."""
        if self._retry_at is None:
            return
        with self._lock:
            if self._retry_at is None:
                return
            self._retry_at = None
            self._backoff_s = 0.0
        logger.warning("observed_batch: %s backend reachable again; sending telemetry", self.name)

    def drop(self, count: int) -> None:
        """Count items that were not sent because of this backend."""
        with self._lock:
            self.dropped += count
