"""The key-limit benchmark's jobs: the same keyed no-op with no limit and under each limit, set high enough never to
bite (tests/benchmarks/test_key_limit_costs.py); each counts itself done."""

from __future__ import annotations

from pydantic import BaseModel

import actors  # noqa: F401
from service.bootstrap import redis_client
from service.worker.typed_actor import job

QUEUE = "bench-limits"
#: Never reached: a variant measures what asking costs, not waiting.
NEVER = {"key_concurrency": 100_000, "key_rate_limit": "10000000/s", "throttle": "10000000/s"}


class KeyedPayload(BaseModel):
    counter: str
    account_id: str


def _count(payload: KeyedPayload) -> None:
    redis_client.incr(payload.counter)


@job(KeyedPayload, queue=QUEUE, key="account_id")
def keyed_unlimited(payload: KeyedPayload) -> None:
    _count(payload)


@job(KeyedPayload, queue=QUEUE, key="account_id", key_concurrency=NEVER["key_concurrency"])
def keyed_concurrency(payload: KeyedPayload) -> None:
    _count(payload)


@job(KeyedPayload, queue=QUEUE, key="account_id", key_rate_limit=NEVER["key_rate_limit"])
def keyed_rate(payload: KeyedPayload) -> None:
    _count(payload)


@job(KeyedPayload, queue=QUEUE, key="account_id", throttle=NEVER["throttle"])
def keyed_throttle(payload: KeyedPayload) -> None:
    _count(payload)
