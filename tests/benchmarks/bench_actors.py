"""The service's side of the throughput benchmark: the same no-op job, declared with @job."""

from __future__ import annotations

from pydantic import BaseModel

import actors  # noqa: F401
from service.broker import redis_client
from service.typed_actor import job


class CounterPayload(BaseModel):
    counter: str


@job(CounterPayload, queue="bench")
def service_noop(payload: CounterPayload) -> None:
    redis_client.incr(payload.counter)
