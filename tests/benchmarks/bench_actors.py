"""The service's side of the throughput benchmark: the same no-op job, declared with @job.

BENCH_WITHOUT (comma-separated middleware class names) takes those out of the stack, so that the cost of each
feature can be measured against the whole (test_stack_costs.py); it is read here only, never by the service.
"""

from __future__ import annotations

import os
import sys
import time

from pydantic import BaseModel

import actors  # noqa: F401
from service.broker import broker, redis_client
from service.typed_actor import job

if os.environ.get("EXP_SWITCH"):
    sys.setswitchinterval(float(os.environ["EXP_SWITCH"]))
WITHOUT = {name for name in os.environ.get("BENCH_WITHOUT", "").split(",") if name}
broker.middleware[:] = [m for m in broker.middleware if type(m).__name__ not in WITHOUT]


class CounterPayload(BaseModel):
    counter: str
    work_ms: float = 0


@job(CounterPayload, queue="bench")
def service_noop(payload: CounterPayload) -> None:
    if payload.work_ms:
        time.sleep(payload.work_ms / 1000)
    redis_client.incr(payload.counter)
