"""Periodic jobs on the worker: declares the `periodic` and `schedule` options, and skips a tick that waited too long.

It replaces periodiq's PeriodiqMiddleware, which skips any message whose `scheduled_at` is older than its
skip_delay: a retry keeps its `scheduled_at`, so a periodic job whose retry waited longer than that was dropped.
Here only a first attempt can be stale, and staleness is the time since the tick was sent (a tick sent late by a
scheduler catching up is not stale).
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware, SkipMessage

from service.domain.clock import now_ms
from service.domain.states import JobState
from service.store.job_store import JobStore
from service.store.record_fields import record_fields, retries_of, run_of

logger = logging.getLogger("service.schedules")


class PeriodicJobs(Middleware):
    def __init__(self, store: JobStore, *, grace_s: int, max_payload_bytes: int) -> None:
        self.store = store
        self.grace_s = grace_s
        self.max_payload_bytes = max_payload_bytes  #: MAX_PAYLOAD_BYTES: a skipped tick's record keeps no more

    @property
    def actor_options(self) -> set[str]:
        return {"periodic", "schedule"}

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if "scheduled_at" not in message.options or retries_of(message) or run_of(message):
            return  # not a tick (sent by hand, by the API), or a retry: always runs
        waited_s = (now_ms() - message.message_timestamp) / 1000
        if waited_s <= self.grace_s:
            return
        # A later tick does the same work; running a pile of old ticks after an outage would not help.
        reason = (
            f"skipped: tick {message.options.get('schedule_tick', message.options['scheduled_at'])} waited "
            f"{waited_s:.0f} s for a worker, more than SCHEDULE_MISFIRE_GRACE_S={self.grace_s}"
        )
        self.store.transition(
            message.message_id,
            JobState.CANCELLED,
            run=run_of(message),
            retries=retries_of(message),
            fields={"failedReason": reason},
            create=record_fields(message, self.max_payload_bytes),
        )
        logger.warning("%s: %s", message.message_id, reason)
        raise SkipMessage(reason)
