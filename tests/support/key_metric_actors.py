"""Keyed jobs for the tests of the per-key gauges (service/ops/key_metrics.py), on a queue of their own: one that runs
until its test opens its gate, so it can be counted while it runs, and one that fails its first attempt."""

from __future__ import annotations

import time

from pydantic import BaseModel

import actors  # noqa: F401  (sets the broker up and declares the real jobs first)
from service.bootstrap import redis_client
from service.domain.errors import PermanentError
from service.worker.typed_actor import job

QUEUE = "test-keymetrics"


def gate_open(gate: str) -> str:
    """Set it and the job of this gate goes on."""
    return f"test:keymetrics:open:{gate}"


def gate_cured(gate: str) -> str:
    """Set it and the job of this gate succeeds once its gate opens; unset, it fails."""
    return f"test:keymetrics:cured:{gate}"


class GatedPayload(BaseModel):
    account_id: str
    gate: str


@job(GatedPayload, queue=QUEUE, key="account_id", max_retries=0, time_limit=60_000)
def gated(payload: GatedPayload) -> str:
    deadline = time.monotonic() + 50
    while not redis_client.exists(gate_open(payload.gate)):
        if time.monotonic() > deadline:
            raise PermanentError(f"gate {payload.gate} never opened")
        time.sleep(0.02)
    if not redis_client.exists(gate_cured(payload.gate)):
        raise PermanentError(f"not cured: {payload.gate}")
    return payload.gate


class FlakyPayload(BaseModel):
    account_id: str
    tag: str


@job(FlakyPayload, queue=QUEUE, key="account_id", max_retries=2, retry_delays=[100])
def fails_once(payload: FlakyPayload) -> int:
    """Fails its first attempt, so it waits `delayed` for a retry before it completes."""
    attempt = int(redis_client.incr(f"test:keymetrics:attempts:{payload.tag}"))
    if attempt == 1:
        raise RuntimeError("first attempt fails")
    return attempt
