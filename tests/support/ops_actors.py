"""Test-only jobs for the operating tests, on queues of their own ("ops", "ops-other") so the session-wide worker
never takes them: each test starts the workers it needs."""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

import actors  # noqa: F401  (sets the broker up and declares the real jobs first)
from service.bootstrap import redis_client
from service.domain.errors import PermanentError
from service.worker.progress import report_progress
from service.worker.typed_actor import job


class StepPayload(BaseModel):
    key: str
    seconds: float = Field(0.2, ge=0)


def _step(payload: StepPayload) -> int:
    """Stamps its start, works in small steps (so an interruption lands quickly), counts its completion."""
    redis_client.rpush(f"test:starts:{payload.key}", f"{time.time():.4f}")
    steps = max(1, int(payload.seconds / 0.05))
    for step in range(steps):
        time.sleep(payload.seconds / steps)
        report_progress((step + 1) * 100 / steps, f"step {step + 1} of {steps}")
    return int(redis_client.incr(f"test:completions:{payload.key}"))


@job(StepPayload, queue="ops", max_retries=0, time_limit=120_000)
def ops_step(payload: StepPayload) -> int:
    return _step(payload)


@job(StepPayload, queue="ops-other", max_retries=0, time_limit=120_000)
def ops_other_step(payload: StepPayload) -> int:
    return _step(payload)


class DoomedPayload(BaseModel):
    key: str


@job(DoomedPayload, queue="ops", max_retries=0)
def ops_doomed(payload: DoomedPayload) -> int:
    """Fails until `test:cured:<key>` is set, then succeeds: a bug fixed between the failure and the requeue."""
    if not redis_client.get(f"test:cured:{payload.key}"):
        raise PermanentError(f"not cured yet: {payload.key}")
    return int(redis_client.incr(f"test:completions:{payload.key}"))
