"""FastAPI dependencies: the service layer, and the bearer-token check for routes that change state.

The dependencies themselves are `async def` although they never wait: FastAPI runs a plain function on its thread
pool, and those hops (two or three a request) cost more than most routes' own work. Each service object is built
once, by the cached `get_*` functions, which other code may call directly."""

from __future__ import annotations

import hmac
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Header, HTTPException

import actors  # noqa: F401  (declares every job, so the API knows their names and payload models)
from service.bootstrap import broker, log_store, redis_client, schedule_store, settings, store
from service.ops.activity import Activity
from service.ops.event_feed import EventFeed
from service.ops.event_log import EventLog
from service.ops.inbound_hooks import HOOK_ID_TTL_S, InboundHooks
from service.ops.job_logs import JobLogs
from service.ops.jobs import Jobs
from service.ops.queues import QueueControl
from service.ops.schedules import Schedules
from service.rabbit.dead_letters import DeadLetters
from service.store.hook_ids import HookIds
from service.store.pauses import PauseFlags


@lru_cache(maxsize=1)
def get_jobs() -> Jobs:
    return Jobs(broker, store)


async def provide_jobs() -> Jobs:
    return get_jobs()


JobsDep = Annotated[Jobs, Depends(provide_jobs)]


@lru_cache(maxsize=1)
def get_event_log() -> EventLog:
    return EventLog(redis_client)


async def provide_event_log() -> EventLog:
    return get_event_log()


EventLogDep = Annotated[EventLog, Depends(provide_event_log)]


@lru_cache(maxsize=1)
def get_event_feed() -> EventFeed:
    return EventFeed(get_event_log())


async def provide_event_feed() -> EventFeed:
    return get_event_feed()


EventFeedDep = Annotated[EventFeed, Depends(provide_event_feed)]


@lru_cache(maxsize=1)
def get_inbound_hooks() -> InboundHooks:
    return InboundHooks(get_jobs(), HookIds(redis_client, HOOK_ID_TTL_S))


async def provide_inbound_hooks() -> InboundHooks:
    return get_inbound_hooks()


InboundHooksDep = Annotated[InboundHooks, Depends(provide_inbound_hooks)]


@lru_cache(maxsize=1)
def get_activity() -> Activity:
    return Activity(store)


async def provide_activity() -> Activity:
    return get_activity()


ActivityDep = Annotated[Activity, Depends(provide_activity)]


@lru_cache(maxsize=1)
def get_job_logs() -> JobLogs:
    return JobLogs(log_store, settle_s=2 * settings.job_log_flush_ms / 1000)


async def provide_job_logs() -> JobLogs:
    return get_job_logs()


JobLogsDep = Annotated[JobLogs, Depends(provide_job_logs)]


@lru_cache(maxsize=1)
def get_queue_control() -> QueueControl:
    jobs = get_jobs()
    return QueueControl(jobs, PauseFlags(redis_client), DeadLetters(jobs.link))


async def provide_queue_control() -> QueueControl:
    return get_queue_control()


QueueControlDep = Annotated[QueueControl, Depends(provide_queue_control)]


@lru_cache(maxsize=1)
def get_schedules() -> Schedules:
    return Schedules(broker, schedule_store)


async def provide_schedules() -> Schedules:
    return get_schedules()


SchedulesDep = Annotated[Schedules, Depends(provide_schedules)]


async def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
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
