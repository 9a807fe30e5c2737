"""Job records written straight through the job store, for tests that need a job no worker will pick up."""

from __future__ import annotations

import json
import uuid
from typing import Any

from service.bootstrap import store
from service.domain.clock import iso_from_ms, now_ms
from service.domain.states import JobState


def put_record(
    actor: str = "add", data: dict[str, Any] | None = None, *, queue: str = "test", key: str | None = None
) -> str:
    """A queued job that was never published: it stays queued until the test moves it. `key`: the job's key."""
    job_id = str(uuid.uuid4())
    created = now_ms()
    fields = {
        "jobId": job_id,
        "actor": actor,
        "queue": queue,
        "data": json.dumps(data or {}),
        "priority": "normal",
        "createdMs": created,
        "createdAt": iso_from_ms(created),
    }
    if key is not None:
        fields["key"] = key
    store.transition(job_id, JobState.QUEUED, create=fields)
    return job_id


def move(job_id: str, state: JobState, **fields: Any) -> None:
    store.transition(job_id, state, fields=fields)
