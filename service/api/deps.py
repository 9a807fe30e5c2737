"""FastAPI dependencies: the service layer, and the bearer-token check for routes that change state."""

from __future__ import annotations

import hmac
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Header, HTTPException

import actors  # noqa: F401  (declares every job, so the API knows their names and payload models)
from service.activity import Activity
from service.broker import broker, redis_client, schedule_store, settings, store
from service.dead_letters import DeadLetters
from service.jobs import Jobs
from service.pauses import PauseFlags
from service.queue_control import QueueControl
from service.schedule_views import Schedules


@lru_cache(maxsize=1)
def get_jobs() -> Jobs:
    return Jobs(broker, store)


JobsDep = Annotated[Jobs, Depends(get_jobs)]


@lru_cache(maxsize=1)
def get_activity() -> Activity:
    return Activity(store)


ActivityDep = Annotated[Activity, Depends(get_activity)]


@lru_cache(maxsize=1)
def get_queue_control() -> QueueControl:
    return QueueControl(get_jobs(), PauseFlags(redis_client), DeadLetters(broker))


QueueControlDep = Annotated[QueueControl, Depends(get_queue_control)]


@lru_cache(maxsize=1)
def get_schedules() -> Schedules:
    return Schedules(broker, schedule_store)


SchedulesDep = Annotated[Schedules, Depends(get_schedules)]


def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
    """Every route that changes state depends on this. With API_TOKEN empty the API is open."""
    expected = settings.api_token
    if not expected:
        return
    scheme, _, given = (authorization or "").partition(" ")
    # compare_digest: the time taken does not tell an attacker how much of the token was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise HTTPException(
            status_code=401, detail="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


Authorized = Depends(require_token)
