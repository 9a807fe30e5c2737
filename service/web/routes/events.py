"""GET /jobs/{jobId}/events: Server-Sent Events of a job's state and progress, until it reaches a final state.

State changes come from the lifecycle-event stream (service/ops/event_feed.py), so none is skipped however quickly they
follow each other (active, delayed for a retry, active again, completed); progress comes from the job's record,
read while the job is not finished, as progress writes are not events.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from service.domain.records import JobRecord
from service.domain.states import FINAL_STATES
from service.ops.event_log import Event
from service.ops.jobs import JobNotFound, Jobs, Unavailable
from service.ops.unavailable import store_call
from service.settings import load_settings
from service.web.deps import EventFeedDep, JobsDep

router = APIRouter(tags=["jobs"])

#: How often a stream looks at the job's progress; progress writes are throttled to 4 a second, so faster gains nothing.
POLL_S = 0.25
#: A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_S = 15.0
#: What EventSource waits before reconnecting after a stream reached its lifetime.
RECONNECT_MS = 1000


class EventSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SSE_", extra="ignore")

    #: Streams open at once in one web process; more get 503 (each costs a poll of Redis 4 times a second).
    max_streams: int = Field(100, ge=1, le=10_000)
    #: A stream ends after this long; browsers reconnect by themselves, so a forgotten tab costs nothing forever.
    max_seconds: float = Field(600, gt=0, le=86_400)


class StreamCount:
    """Streams open in this process. One event loop touches it, so a plain integer is enough."""

    def __init__(self) -> None:
        self.open = 0


streams = StreamCount()


class CountedStream(StreamingResponse):
    """Gives its slot back, and stops listening to the event feed, however the stream ends: finished, timed out, or
    the client went away."""

    def __init__(self, *args: Any, on_close: Callable[[], None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            streams.open -= 1
            if self.on_close is not None:
                self.on_close()


def snapshot(record: JobRecord) -> dict[str, Any]:
    return {
        "jobId": record.jobId,
        "state": record.state.value,
        "progress": record.progress,
        "progressMessage": record.progressMessage,
        "attempts": record.attempts,
        "failedReason": record.failedReason,
        "updatedAt": record.updatedAt,
    }


def frame(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


#: The order states follow within one attempt; the (run, retry) of a change orders attempts (as transition.lua does).
RANK = {"queued": 0, "delayed": 0, "active": 1, "completed": 2, "failed": 2, "cancelled": 2}
Position = tuple[int, int, int, int]


def position_of(record: JobRecord) -> Position:
    """Where the record stands: (run, retry, rank, attempts) of its last change."""
    last = record.history[-1] if record.history else None
    run, retry = (last.run, last.retry) if last else (0, 0)
    return (run, retry, RANK[record.state.value], record.attempts)


def position(event: Event, attempts: int) -> Position:
    return (event.run or 0, event.retry or 0, RANK.get(event.state, 0), event.attempt or attempts)


def step(previous: dict[str, Any], event: Event) -> dict[str, Any]:
    """The frame of a state the job passed through: the last frame, moved on to the event's state."""
    current = {**previous, "state": event.state, "updatedAt": event.at}
    if event.attempt is not None:
        current["attempts"] = event.attempt
    return current


async def job_events(
    jobs: Jobs, record: JobRecord, arrived: asyncio.Queue[Event], max_seconds: float
) -> AsyncIterator[str]:
    """One `job` event per change of state, progress or message; the last one carries a final state."""
    started = last_sent = time.monotonic()
    yield f"retry: {RECONNECT_MS}\n\n"
    previous = snapshot(record)
    at = position_of(record)
    yield frame("job", previous)
    while record.state not in FINAL_STATES:
        if time.monotonic() - started > max_seconds:
            return  # the client reconnects if it still cares
        try:
            events = [await asyncio.wait_for(arrived.get(), POLL_S)]
            while not arrived.empty():
                events.append(arrived.get_nowait())
        except TimeoutError:
            events = []
        try:
            record = await run_in_threadpool(jobs.get, record.jobId)
        except JobNotFound:
            yield frame("gone", {"jobId": record.jobId, "detail": "Job not found"})
            return
        except Unavailable as error:
            yield frame("unavailable", {"jobId": record.jobId, "detail": error.summary})
            return
        for event in events:
            # Only changes past the one last shown: the record read first may already show an event that arrives
            # after it, and states never go backwards.
            if position(event, at[3]) <= at or event.state in {s.value for s in FINAL_STATES}:
                continue  # a final state is shown from the record, with its result or reason
            previous, at = step(previous, event), position(event, at[3])
            yield frame("job", previous)
            last_sent = time.monotonic()
        current = snapshot(record)
        if current != previous:
            yield frame("job", current)
            previous, at, last_sent = current, max(at, position_of(record)), time.monotonic()
        elif time.monotonic() - last_sent > KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()


@router.get(
    "/jobs/{jobId}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`job` events with jobId, state, progress, progressMessage, attempts, failedReason; "
            "the stream ends after the event with a final state",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        404: {"description": "Job not found"},
        503: {"description": "Too many open streams, or the job store is unreachable"},
    },
)
async def events(jobId: str, jobs: JobsDep, feed: EventFeedDep) -> Response:
    record = await run_in_threadpool(jobs.get, jobId)  # JobNotFound -> 404 before any stream is opened
    limits = load_settings(EventSettings)
    if streams.open >= limits.max_streams:
        return JSONResponse(
            {"detail": f"too many open event streams (limit {limits.max_streams}); try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    arrived: asyncio.Queue[Event] = asyncio.Queue()
    stop_listening = None
    if record.state not in FINAL_STATES:
        loop = asyncio.get_running_loop()

        def hand_over(event: Event) -> None:  # called from the feed's thread
            loop.call_soon_threadsafe(arrived.put_nowait, event)

        # Listening first, then reading the record again: no change can fall between the two.
        stop_listening = await run_in_threadpool(store_call, lambda: feed.listen(jobId, hand_over))
        record = await run_in_threadpool(jobs.get, jobId)
    streams.open += 1
    return CountedStream(
        job_events(jobs, record, arrived, limits.max_seconds),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        on_close=stop_listening,
    )
