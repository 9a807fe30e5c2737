"""The service's side of the benchmarks: the same jobs as plain_app.py, declared with @job.

BENCH_WITHOUT (comma-separated middleware class names) takes those out of the stack, so that the cost of each
feature can be measured against the whole (test_stack_costs.py); it is read here only, never by the service. A name
that is not in the stack stops the worker, so that a renamed or removed middleware cannot pass for one that costs
nothing.
"""

from __future__ import annotations

import os
import sys
import time

import redis
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend
from pydantic import BaseModel

import actors  # noqa: F401
from service.bootstrap import broker, redis_client
from service.worker.typed_actor import job

if os.environ.get("EXP_SWITCH"):
    sys.setswitchinterval(float(os.environ["EXP_SWITCH"]))
WITHOUT = {name for name in os.environ.get("BENCH_WITHOUT", "").split(",") if name}
_unknown = WITHOUT - {type(m).__name__ for m in broker.middleware}
if _unknown:
    raise SystemExit(f"BENCH_WITHOUT names middleware not in the stack: {', '.join(sorted(_unknown))}")
broker.middleware[:] = [m for m in broker.middleware if type(m).__name__ not in WITHOUT]
#: Without the job store nothing records a job: its Dramatiq result, in a database of its own, says it is done, as
#: for plain Dramatiq (tests/benchmarks/cold_drain.py counts them).
RESULTS_WITHOUT_STORE = "StatusMiddleware" in WITHOUT
if RESULTS_WITHOUT_STORE:
    for middleware in broker.middleware:
        if isinstance(middleware, Results):
            middleware.backend = RedisBackend(client=redis.Redis.from_url(os.environ["BENCH_RESULTS_URL"]))  # type: ignore[no-untyped-call]


class CounterPayload(BaseModel):
    counter: str
    work_ms: float = 0


class WorkPayload(BaseModel):
    work_ms: float = 0


@job(CounterPayload, queue="bench")
def service_noop(payload: CounterPayload) -> None:
    """The soak benchmark's job: it counts itself."""
    if payload.work_ms:
        time.sleep(payload.work_ms / 1000)
    redis_client.incr(payload.counter)


@job(WorkPayload, queue="bench", store_results=RESULTS_WITHOUT_STORE)
def bench_noop(payload: WorkPayload) -> None:
    """The throughput benchmark's job, sent by tests/benchmarks/plain_sender.py: nothing, or a sleep standing for
    I/O. It is done once the store has recorded it completed."""
    if payload.work_ms:
        time.sleep(payload.work_ms / 1000)
