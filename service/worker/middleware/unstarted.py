"""Ends a job that will not run, before it starts: recorded `cancelled` with why, then its message is acknowledged.
Singleton and debounce refuse jobs this way (service/domain/flow_control.py)."""

from __future__ import annotations

import functools
import logging
from typing import Any

from dramatiq.middleware import SkipMessage

from service.domain.states import JobState
from service.store.job_store import JobStore
from service.store.record_fields import PARENT_ATTEMPT, record_fields, retries_of, run_of
from service.worker.middleware.status import RECORDED

logger = logging.getLogger("service.jobs")


def cancel_unstarted(store: JobStore, message: Any, reason: str, *, max_payload_bytes: int) -> None:
    """Record the job `cancelled` with `reason` and skip its message (acknowledged, since the outcome is recorded).
    Returns without writing only when an attempt of this job started after this message was published (a redelivered
    copy of a job that runs, or ran, elsewhere): then the status middleware waits for that attempt or takes it over,
    as for any copy. A write that fails raises: the job does not run, its message comes back (hook_failures.py)."""
    # The fencing token of the attempt that published this message (0: its sender): the write is refused ("fenced")
    # when the record counts a later attempt, so a job that started meanwhile is never marked cancelled under it.
    token = int(message.options.get(PARENT_ATTEMPT, 0))
    write = functools.partial(
        store.transition,
        message.message_id,
        JobState.CANCELLED,
        run=run_of(message),
        retries=retries_of(message),
        fields={"failedReason": reason},
        token=token,
    )
    create = functools.partial(write, create=record_fields(message, max_payload_bytes))
    outcome = write() if message.options.get(RECORDED) else create()
    if outcome.missing:  # recorded by its sender, but lost since: written whole
        outcome = create()
    if outcome.fenced:
        return
    logger.info("job %s not started: %s", message.message_id, reason, extra={"event": "cancelled"})
    raise SkipMessage(reason)
