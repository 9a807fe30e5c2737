"""A job for the tests of search and bulk actions (queue "test-bulk", which only their own workers consume): it counts
its runs per job id in Redis. And failed jobs made quickly: written through the store's transitions, as a worker's
failure leaves them, without running thousands of failing jobs first."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from pydantic import BaseModel

import actors  # noqa: F401  (sets the broker up and declares the real jobs first)
from service.bootstrap import redis_client, store
from service.domain.clock import iso_from_ms, now_ms
from service.domain.context import current_job
from service.domain.states import JobState
from service.worker.typed_actor import job
from tests.support.workers import WorkerProcess

QUEUE = "test-bulk"
#: job id -> how many times it ran
RUNS = "test:bulk:runs"


class BulkPayload(BaseModel):
    n: int = 0
    account: str | None = None


@job(BulkPayload, queue=QUEUE, max_retries=0, key="account")
def bulk_target(payload: BulkPayload) -> int:
    context = current_job.get()
    return int(redis_client.hincrby(RUNS, context.job_id if context else "?", 1))


def recorded_jobs(
    count: int,
    state: JobState,
    *,
    reason: str | None = None,
    account: str | None = None,
    created_ms: int | Sequence[int] | None = None,
    actor: str = "bulk_target",
    queue: str = QUEUE,
) -> list[str]:
    """`count` jobs of `actor` in `state` (any state: a final one is written as the worker's outcome would be), with
    their failedReason and key; created now, at one given ms, or each at its own. No message exists for them."""
    stamp = now_ms()
    moments = [created_ms] * count if isinstance(created_ms, int) else list(created_ms or [stamp] * count)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    rows = []
    for job_id, created in zip(ids, moments, strict=True):
        fields: dict[str, object] = {
            "jobId": job_id,
            "actor": actor,
            "queue": queue,
            "data": json.dumps({"n": 1, **({"account": account} if account else {})}),
            "priority": "normal",
            "createdMs": created,
            "createdAt": iso_from_ms(created),
        }
        if account is not None:
            fields["key"] = account
        if reason is not None:
            fields["failedReason"] = reason
        rows.append((job_id, state, fields))
    for start in range(0, len(rows), 1000):
        store.record_enqueued(rows[start : start + 1000])
    return ids


def bulk_worker(processes: int = 2, threads: int = 8, env: dict[str, str] | None = None) -> WorkerProcess:
    """Workers for the test-bulk queue only, with this module loaded."""
    return WorkerProcess(processes=processes, threads=threads, queues=[QUEUE], modules=[__name__], env=env)
