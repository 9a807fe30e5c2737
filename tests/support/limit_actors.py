"""Jobs with limits per key, for the tests of service/domain/limits.py: each notes, in a Redis no fault touches,
when it started, in which process, and how many jobs of its key ran at that moment."""

from __future__ import annotations

import os
import time

import redis
from pydantic import BaseModel

import actors  # noqa: F401  (sets the broker up and declares the real jobs first)
from service.worker.typed_actor import job

QUEUE = "test-limits"
#: The limits the actors declare, for the tests to check against.
CONCURRENCY = 2
RATE = "3/s"
RATE_COUNT, RATE_PERIOD_MS = 3, 1000
THROTTLE = "2/s"
THROTTLE_DROP = "2/3s"

#: The notes survive a Redis cut in front of a worker (LIMIT_NOTES_REDIS_URL names the real one).
notes = redis.Redis.from_url(
    os.environ.get("LIMIT_NOTES_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
    decode_responses=True,
)


def notes_key(actor: str, key: str, what: str) -> str:
    return f"test:limits:{actor}:{key}:{what}"


class KeyedPayload(BaseModel):
    account_id: str = ""
    n: int = 0
    seconds: float = 0.0
    #: Fail the first attempt (a retry follows), to show a limited wait uses no attempt of its own.
    fail_first: bool = False
    #: Sleep `seconds` only in the first execution of this job (a copy run after its worker was killed is quick).
    first_only: bool = False


def run(actor: str, payload: KeyedPayload, job_id: str = "") -> int:
    """Note the start (ms, pid, how many of the key run now), sleep, note the end."""
    running = notes_key(actor, payload.account_id, "running")
    now = notes.incr(running)
    try:
        started_ms = int(time.time() * 1000)
        notes.rpush(notes_key(actor, payload.account_id, "starts"), f"{started_ms} {os.getpid()} {now} {payload.n}")
        sleep = payload.seconds
        if payload.first_only and not notes.set(notes_key(actor, payload.account_id, f"ran:{payload.n}"), 1, nx=True):
            sleep = 0
        time.sleep(sleep)
        if payload.fail_first and notes.incr(notes_key(actor, payload.account_id, f"tries:{payload.n}")) == 1:
            raise RuntimeError("first attempt fails, as asked")
        return payload.n
    finally:
        notes.decr(running)


@job(KeyedPayload, queue=QUEUE, key="account_id", key_concurrency=CONCURRENCY, max_retries=2,
     retry_delays=[200], retry_backoff="fixed")  # fmt: skip
def two_per_key(payload: KeyedPayload) -> int:
    return run("two_per_key", payload)


@job(KeyedPayload, queue=QUEUE, key="account_id", key_concurrency=1, max_retries=0)
def one_per_key(payload: KeyedPayload) -> int:
    return run("one_per_key", payload)


@job(KeyedPayload, queue=QUEUE, key="account_id", key_rate_limit=RATE, max_retries=0)
def rated(payload: KeyedPayload) -> int:
    return run("rated", payload)


@job(KeyedPayload, queue=QUEUE, key="account_id", throttle=THROTTLE, max_retries=0)
def throttled(payload: KeyedPayload) -> int:
    return run("throttled", payload)


@job(KeyedPayload, queue=QUEUE, key="account_id", throttle=THROTTLE_DROP, throttle_mode="drop", max_retries=0)
def throttled_drop(payload: KeyedPayload) -> int:
    return run("throttled_drop", payload)
