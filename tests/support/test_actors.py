"""Jobs that exist only for tests: they fail, sleep, report progress and count their runs in Redis."""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

import actors  # noqa: F401  (sets the broker up and declares the real jobs first)
from service.bootstrap import redis_client
from service.worker.progress import report_progress
from service.worker.typed_actor import job

QUEUE = "test"


class AddPayload(BaseModel):
    a: int
    b: int


@job(AddPayload, queue=QUEUE, hooks=True)
def add(payload: AddPayload) -> int:
    return payload.a + payload.b


class FlakyPayload(BaseModel):
    key: str
    failures: int = Field(ge=0)


@job(FlakyPayload, queue=QUEUE, max_retries=3, retry_delays=[100, 200, 300])
def flaky(payload: FlakyPayload) -> int:
    """Fails `failures` times, then succeeds; returns how many times it ran."""
    runs = int(redis_client.incr(f"test:runs:{payload.key}"))
    if runs <= payload.failures:
        raise RuntimeError(f"planned failure {runs}")
    return runs


class SlowPayload(BaseModel):
    key: str = "slow"
    seconds: float = 1.0
    steps: int = 10


@job(SlowPayload, queue=QUEUE, max_retries=0, time_limit=60_000)
def slow(payload: SlowPayload) -> int:
    """Sleeps in steps, reporting progress; counts its starts and completions."""
    redis_client.incr(f"test:starts:{payload.key}")
    for step in range(payload.steps):
        time.sleep(payload.seconds / payload.steps)
        report_progress((step + 1) * 100 / payload.steps, f"step {step + 1} of {payload.steps}")
    redis_client.incr(f"test:completions:{payload.key}")
    return payload.steps


#: A queue the shared session worker does not consume: tests that kill or stop workers use their own.
SOLO_QUEUE = "test-solo"


@job(SlowPayload, queue=SOLO_QUEUE, max_retries=0, time_limit=60_000)
def slow_solo(payload: SlowPayload) -> int:
    """`slow` on a queue only a test's own worker consumes."""
    return int(slow.fn(**payload.model_dump()))


class StuckPayload(BaseModel):
    seconds: float = 3600


@job(StuckPayload, queue=QUEUE, max_retries=0, time_limit=1_000)
def stuck(payload: StuckPayload) -> None:
    """Never returns on its own: the time limit has to stop it."""
    deadline = time.monotonic() + payload.seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)


class StampPayload(BaseModel):
    key: str


@job(StampPayload, queue="test-limited", rate_limit="5/s", max_retries=0)
def limited(payload: StampPayload) -> None:
    """Records when it ran, to measure the rate limit across processes."""
    redis_client.rpush(f"test:stamps:{payload.key}", f"{time.time():.4f}")


@job(StampPayload, queue=QUEUE, max_retries=0)
def record_run(payload: StampPayload) -> int:
    return int(redis_client.incr(f"test:runs:{payload.key}"))
