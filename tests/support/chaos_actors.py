"""Jobs for the fault tests: they count every real execution in a Redis that no injected fault touches."""

from __future__ import annotations

import os
import time

import redis
from pydantic import BaseModel, Field

from service.context import current_job
from service.typed_actor import job
from tests.support import test_actors  # noqa: F401  (sets the broker up and declares the other test jobs)

QUEUE = "chaos"

#: The tally has to survive the faults it measures, so it talks to the real Redis, never through a proxy.
tally_client = redis.Redis.from_url(
    os.environ.get("TALLY_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
    decode_responses=True,
)


def tally_key(run: str, what: str) -> str:
    return f"tally:{run}:{what}"


class TallyPayload(BaseModel):
    run: str = Field(description="names the test run, so counts of different runs never mix")
    ms: int = Field(20, ge=0, le=10_000)


@job(TallyPayload, queue=QUEUE, max_retries=3, retry_delays=[100, 200, 300])
def tally(payload: TallyPayload) -> int:
    """Works for `ms`, then records that it ran to the end, with the process that ran it."""
    context = current_job.get()
    job_id = context.job_id if context else "unknown"
    pid = os.getpid()
    tally_client.rpush(tally_key(payload.run, "starts"), f"{job_id} {pid}")
    time.sleep(payload.ms / 1000)
    tally_client.rpush(tally_key(payload.run, "done"), f"{job_id} {pid} {time.time():.4f}")
    return pid


class SpinPayload(BaseModel):
    seconds: float = Field(3600, gt=0)


@job(SpinPayload, queue=QUEUE, max_retries=0, time_limit=1_000)
def spin(payload: SpinPayload) -> None:
    """Burns CPU in pure Python and never yields on its own: only the time limit stops it."""
    deadline = time.monotonic() + payload.seconds
    counter = 0
    while time.monotonic() < deadline:
        counter += 1


class HogPayload(BaseModel):
    megabytes: int = Field(ge=1)


@job(HogPayload, queue=QUEUE, max_retries=0, time_limit=30_000)
def hog(payload: HogPayload) -> int:
    """Allocates memory 16 MB at a time until it has `megabytes` (or the process limit says no)."""
    chunks = [bytearray(16 * 1024 * 1024) for _ in range(payload.megabytes // 16 + 1)]
    return len(chunks)
