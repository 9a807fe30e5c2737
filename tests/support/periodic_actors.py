"""Periodic jobs that exist only for tests, on their own queue: they record which tick they ran for."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

import actors  # noqa: F401  (sets the broker up and declares the real jobs first)
from service.bootstrap import redis_client
from service.domain.periodic import Periodic
from service.worker.typed_actor import job

QUEUE = "test-periodic"


class TickPayload(BaseModel):
    tick: str


def tick_payload(tick: datetime) -> dict[str, str]:
    return {"tick": tick.isoformat()}


def runs_key(actor: str) -> str:
    return f"test:tick-runs:{actor}"


def attempts_key(actor: str) -> str:
    return f"test:tick-attempts:{actor}"


@job(TickPayload, queue=QUEUE, periodic=Periodic("* * * * *", payload=tick_payload), max_retries=0)
def tick_every_minute(payload: TickPayload) -> str:
    """Counts its runs per tick."""
    redis_client.hincrby(runs_key("tick_every_minute"), payload.tick, 1)
    return payload.tick


@job(TickPayload, queue=QUEUE, periodic=Periodic("0 0 1 1 *", payload=tick_payload), max_retries=0)
def tick_yearly(payload: TickPayload) -> str:
    """Rarely due on its own: tests move its ticks with SCHEDULE_TICK_YEARLY or drive time."""
    redis_client.hincrby(runs_key("tick_yearly"), payload.tick, 1)
    return payload.tick


@job(
    TickPayload,
    queue=QUEUE,
    periodic=Periodic("30 2 * * *", payload=tick_payload, timezone="Europe/Paris"),
    max_retries=0,
)
def tick_paris_night(payload: TickPayload) -> str:
    """At 02:30 in Paris: inside the hour skipped in spring, and twice on the clock in autumn."""
    redis_client.hincrby(runs_key("tick_paris_night"), payload.tick, 1)
    return payload.tick


@job(TickPayload, queue=QUEUE, periodic=Periodic("0 0 1 1 *", payload=tick_payload), max_retries=3, retry_delays=[3000])
def tick_flaky(payload: TickPayload) -> int:
    """Fails its first attempt for each tick; the retry waits 3 s, longer than the test worker's 2 s grace."""
    attempts = int(redis_client.hincrby(attempts_key("tick_flaky"), payload.tick, 1))
    if attempts == 1:
        raise RuntimeError(f"planned failure {attempts}")
    redis_client.hincrby(runs_key("tick_flaky"), payload.tick, 1)
    return attempts


@job(TickPayload, queue=QUEUE, periodic="off", max_retries=0)
def tick_off(payload: TickPayload) -> str:
    """Declared switched off: listed, never scheduled, unless SCHEDULE_TICK_OFF gives it an expression."""
    redis_client.hincrby(runs_key("tick_off"), payload.tick, 1)
    return payload.tick
