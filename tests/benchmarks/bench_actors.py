"""The service's side of the throughput benchmark: the same no-op job, declared with @job."""

from __future__ import annotations

import time

from pydantic import BaseModel

import actors  # noqa: F401
from service.broker import redis_client
from service.typed_actor import job


class CounterPayload(BaseModel):
    counter: str
    work_ms: float = 0


@job(CounterPayload, queue="bench")
def service_noop(payload: CounterPayload) -> None:
    if payload.work_ms:
        time.sleep(payload.work_ms / 1000)
    redis_client.incr(payload.counter)
