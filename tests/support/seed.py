"""Job records made through the real transition script, as if workers had run them at chosen times."""

from __future__ import annotations

import uuid

from service.domain.clock import iso_from_ms
from service.domain.states import JobState
from service.store.job_store import JobStore


def seed(store: JobStore, actor: str, *, created: int, state: str, took_ms: int = 0, reason: str = "") -> str:
    """A record that went through the real transition script, with the timestamps a worker would leave."""
    job_id = str(uuid.uuid4())
    fields = {
        "jobId": job_id,
        "actor": actor,
        "queue": "q",
        "data": "{}",
        "priority": "normal",
        "createdMs": created,
        "createdAt": iso_from_ms(created),
    }
    store.transition(job_id, JobState.QUEUED, create=fields, at_ms=created)
    if state in ("queued", "delayed"):
        if state == "delayed":
            store.transition(job_id, JobState.DELAYED, at_ms=created + 1)
        return job_id
    store.transition(job_id, JobState.ACTIVE, at_ms=created + 10)
    if state != "active":
        extra = {"failedReason": reason} if reason else {}
        store.transition(job_id, JobState(state), fields=extra, at_ms=created + 10 + took_ms)
    return job_id
