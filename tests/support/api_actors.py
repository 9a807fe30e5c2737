"""A test-only job on a queue that the shared test worker does not consume, so jobs wait until a test says so."""

from __future__ import annotations

from pydantic import BaseModel

import actors  # noqa: F401  (sets the broker up first)
from service.bootstrap import redis_client
from service.domain.context import current_job
from service.worker.typed_actor import job
from tests.support.workers import WorkerProcess

QUEUE = "api-held"


class HeldPayload(BaseModel):
    key: str


@job(HeldPayload, queue=QUEUE, max_retries=0)
def held(payload: HeldPayload) -> int:
    """Appends its job id to a list, so a test can read the order jobs ran in."""
    context = current_job.get()
    return int(redis_client.rpush(f"test:order:{payload.key}", context.job_id if context else "?"))


def held_worker(threads: int = 1) -> WorkerProcess:
    """A worker for the held queue only (it also loads this module, which the shared worker does not)."""
    process = WorkerProcess(processes=1, threads=threads, queues=[QUEUE])
    process.command.insert(process.command.index("tests.support.test_actors") + 1, __name__)
    return process
