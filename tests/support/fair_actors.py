"""Jobs of tenants, for the fair-dispatch tests and benchmarks: the same job on a fair queue (FAIR_QUEUES=fair-* in
tests/conftest.py) and on a plain one. Each run is noted in Redis: its tenant, number, wait (from the payload's
`sent_at` to its start) and when it finished."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from pydantic import BaseModel

import actors  # noqa: F401  (sets the broker up and declares the real jobs first)
from service.bootstrap import pauses, redis_client
from service.worker.typed_actor import job

FAIR_QUEUE = "fair-tenants"
PLAIN_QUEUE = "plain-tenants"


class TenantPayload(BaseModel):
    tenant: str = ""
    n: int = 0
    sleep_ms: int = 0
    sent_at: float = 0.0  #: time.time() when sent
    fail_first: int = 0  #: attempts that fail before one succeeds
    pause_on_fail: bool = False  #: a failing attempt pauses the queue first (its retry then waits in RabbitMQ)


@dataclass(frozen=True)
class Run:
    tenant: str
    n: int
    wait_s: float
    finished_at: float


def runs_key(queue: str) -> str:
    return f"test:fair:{queue}:runs"


def runs(queue: str) -> list[Run]:
    """Every run noted on `queue`, in the order they finished."""
    return [Run(*json.loads(item)) for item in redis_client.lrange(runs_key(queue), 0, -1)]


def _run(queue: str, payload: TenantPayload) -> int:
    started = time.time()
    if payload.fail_first and redis_client.incr(f"test:fair:{queue}:attempts:{payload.n}") <= payload.fail_first:
        if payload.pause_on_fail:
            pauses.pause(queue)
        raise RuntimeError("asked to fail this attempt")
    if payload.sleep_ms:
        time.sleep(payload.sleep_ms / 1000)
    note = [payload.tenant, payload.n, started - payload.sent_at, time.time()]
    redis_client.rpush(runs_key(queue), json.dumps(note))
    return payload.n


@job(TenantPayload, queue=FAIR_QUEUE, key="tenant", max_retries=3)
def fair_tenant_job(payload: TenantPayload) -> int:
    return _run(FAIR_QUEUE, payload)


@job(TenantPayload, queue=PLAIN_QUEUE, key="tenant", max_retries=3)
def plain_tenant_job(payload: TenantPayload) -> int:
    return _run(PLAIN_QUEUE, payload)
