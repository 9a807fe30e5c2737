"""Time limits, counted from the actor's start and raised only while the actor runs (middleware/in_hand.py).

Dramatiq's TimeLimit keeps a dict of its own per message and may raise in a hook; this one has no per-message hook
at all: once a second it reads the jobs in hand whose actor runs, and each one's limit from its message.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from dramatiq.middleware.time_limit import TimeLimitExceeded

from service.worker.middleware.in_hand import InHand, JobsInHand

logger = logging.getLogger(__name__)


class JobTimeLimit(Middleware):
    """Same option (`time_limit`, ms) and same exception (TimeLimitExceeded) as Dramatiq's TimeLimit, so retries and
    records read as before."""

    def __init__(self, in_hand: JobsInHand, *, time_limit: int, interval_s: float = 1.0) -> None:
        self.in_hand = in_hand
        self.time_limit = time_limit
        self.interval_s = interval_s
        self._broker: dramatiq.Broker | None = None

    @property
    def actor_options(self) -> set[str]:
        return {"time_limit"}

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._broker = broker
        threading.Thread(target=self._watch, name="time-limits", daemon=True).start()

    def limit_ms(self, entry: InHand) -> float:
        """The message's own limit, else its actor's, else TIME_LIMIT_MS's; no limit for an actor called directly."""
        if entry.message is None or not entry.job_id:
            return float("inf")
        limit = entry.message.options.get("time_limit")
        if not limit and self._broker is not None:
            limit = self._broker.get_actor(entry.actor).options.get("time_limit")
        return float(limit or self.time_limit)

    def check(self) -> None:
        now = time.monotonic()
        for thread_id, entry in self.in_hand.runs().items():
            limit_ms = self.limit_ms(entry)
            late = (now - entry.run_started) * 1000 >= limit_ms
            if late and self.in_hand.interrupt(thread_id, entry.job_id, TimeLimitExceeded):
                logger.warning("job %s exceeded its time limit of %d ms: interrupting it", entry.job_id, limit_ms)

    def _watch(self) -> None:
        while True:
            time.sleep(self.interval_s)
            try:
                self.check()
            except Exception:  # a bug here must not end the watch for every later job
                logger.exception("time limit check failed")
