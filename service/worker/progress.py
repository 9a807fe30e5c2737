"""report_progress(): how a job tells the world how far along it is, and learns it was cancelled."""

from __future__ import annotations

import logging
import time

import redis

from service.domain.context import JobContext, current_job
from service.domain.errors import JobCancelled
from service.store.job_store import JobStore

logger = logging.getLogger(__name__)

#: Progress is written at most this often per job; a tight loop costs a clock read, not a Redis call.
WRITE_INTERVAL_S = 0.25

_store: JobStore | None = None


def bind_store(store: JobStore) -> None:
    """Called once by the composition root (service.bootstrap)."""
    global _store
    _store = store


def report_progress(percent: float, message: str | None = None) -> None:
    """Record progress (0-100) for the current job. Raises JobCancelled if someone asked the job to stop."""
    job = current_job.get()
    if job is None or _store is None:
        return  # called outside a job (a unit test, a script): nothing to record
    value = max(0, min(100, int(percent)))
    now = time.monotonic()
    if now - job.last_progress_write < WRITE_INTERVAL_S and value < 100:
        job.pending = (value, message)
        return
    _write(job, _store, value, message, now)


def flush_progress() -> None:
    """Write the last throttled progress report, if any (the status middleware calls this as a job ends)."""
    job = current_job.get()
    if job is not None and job.pending is not None and _store is not None:
        value, message = job.pending
        try:
            _store.report_progress(job.job_id, value, message)
        except redis.RedisError:
            logger.warning("progress not recorded: job store unreachable")
        job.pending = None


def _write(job: JobContext, store: JobStore, value: int, message: str | None, now: float) -> None:
    job.last_progress_write = now
    job.pending = None
    try:
        _, cancel_requested = store.report_progress(job.job_id, value, message)
    except redis.RedisError:
        # Progress is advisory: a Redis outage must not fail the work itself.
        logger.warning("progress not recorded: job store unreachable")
        return
    if cancel_requested:
        raise JobCancelled("cancelled on request")
