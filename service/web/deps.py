"""FastAPI dependencies: the parts of the one service object (service.bootstrap.services()) that routes take, and the
bearer-token check for routes that change state.

The dependencies are `async def` although they never wait: FastAPI runs a plain function on its thread pool, and
those hops (two or three a request) cost more than most routes' own work. A test swaps a part for one of its own with
`app.dependency_overrides[provide_jobs] = ...`."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, HTTPException

from service.bootstrap import services, settings
from service.ops.activity import Activity
from service.ops.bulk import BulkActions
from service.ops.dead_jobs import DeadJobs
from service.ops.delayed import DelayedJobs
from service.ops.event_feed import EventFeed
from service.ops.event_log import EventLog
from service.ops.inbound_hooks import InboundHooks
from service.ops.job_logs import JobLogs
from service.ops.jobs import Jobs
from service.ops.metrics import JobMetrics
from service.ops.queues import Queues
from service.ops.schedules import Schedules
from service.ops.services import Services

T = TypeVar("T")


#: Every part a route can take, with where it sits in the service object: a test serves a whole one of its own
#: (on a Redis or a RabbitMQ that is away) by overriding each.
PARTS: dict[Callable[[], Awaitable[Any]], Callable[[Services], Any]] = {}


def part(pick: Callable[[Services], T]) -> Callable[[], Awaitable[T]]:
    """A dependency that hands a route one part of the service object. A direct one: a dependency of its own for
    the service object would add a level to every request's dependency graph (40 us, on the busiest routes)."""

    async def provide() -> T:
        return pick(services())

    PARTS[provide] = pick
    return provide


provide_jobs = part(lambda s: s.jobs)
provide_queues = part(lambda s: s.queues)
provide_dead_jobs = part(lambda s: s.queues.dead)
provide_delayed = part(lambda s: s.queues.delayed)
provide_schedules = part(lambda s: s.schedules)
provide_activity = part(lambda s: s.activity)
provide_event_log = part(lambda s: s.event_log)
provide_event_feed = part(lambda s: s.event_feed)
provide_job_logs = part(lambda s: s.job_logs)
provide_inbound_hooks = part(lambda s: s.inbound_hooks)
provide_metrics = part(lambda s: s.metrics)
provide_bulk = part(lambda s: s.bulk)

JobsDep = Annotated[Jobs, Depends(provide_jobs)]
QueuesDep = Annotated[Queues, Depends(provide_queues)]
DeadJobsDep = Annotated[DeadJobs, Depends(provide_dead_jobs)]
DelayedDep = Annotated[DelayedJobs, Depends(provide_delayed)]
SchedulesDep = Annotated[Schedules, Depends(provide_schedules)]
ActivityDep = Annotated[Activity, Depends(provide_activity)]
EventLogDep = Annotated[EventLog, Depends(provide_event_log)]
EventFeedDep = Annotated[EventFeed, Depends(provide_event_feed)]
JobLogsDep = Annotated[JobLogs, Depends(provide_job_logs)]
InboundHooksDep = Annotated[InboundHooks, Depends(provide_inbound_hooks)]
MetricsDep = Annotated[JobMetrics, Depends(provide_metrics)]
BulkDep = Annotated[BulkActions, Depends(provide_bulk)]


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
