"""GET /jobs/{jobId}/events: Server-Sent Events of a job's state and progress, until it reaches a final state."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from service.api.deps import JobsDep
from service.jobs import JobNotFound, Jobs, Unavailable
from service.records import JobRecord
from service.settings import exit_on_invalid
from service.states import FINAL_STATES

router = APIRouter(tags=["jobs"])

#: How often a stream looks at the job; progress writes are throttled to 4 a second, so faster gains nothing.
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


@lru_cache(maxsize=1)
def event_settings() -> EventSettings:
    return exit_on_invalid(EventSettings)


class StreamCount:
    """Streams open in this process. One event loop touches it, so a plain integer is enough."""

    def __init__(self) -> None:
        self.open = 0


streams = StreamCount()


class CountedStream(StreamingResponse):
    """Gives its slot back however the stream ends: finished, timed out, or the client went away."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            streams.open -= 1


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


async def job_events(jobs: Jobs, record: JobRecord, max_seconds: float) -> AsyncIterator[str]:
    """One `job` event per change of state, progress or message; the last one carries a final state."""
    started = last_sent = time.monotonic()
    yield f"retry: {RECONNECT_MS}\n\n"
    previous: dict[str, Any] | None = None
    while True:
        current = snapshot(record)
        if current != previous:
            yield frame("job", current)
            previous, last_sent = current, time.monotonic()
            if record.state in FINAL_STATES:
                return
        elif time.monotonic() - last_sent > KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        if time.monotonic() - started > max_seconds:
            return  # the client reconnects if it still cares
        await anyio.sleep(POLL_S)
        try:
            record = await run_in_threadpool(jobs.get, record.jobId)
        except JobNotFound:
            yield frame("gone", {"jobId": record.jobId, "detail": "Job not found"})
            return
        except Unavailable as error:
            yield frame("unavailable", {"jobId": record.jobId, "detail": error.summary})
            return


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
async def events(jobId: str, jobs: JobsDep) -> Response:
    record = await run_in_threadpool(jobs.get, jobId)  # JobNotFound -> 404 before any stream is opened
    limits = event_settings()
    if streams.open >= limits.max_streams:
        return JSONResponse(
            {"detail": f"too many open event streams (limit {limits.max_streams}); try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    streams.open += 1
    return CountedStream(
        job_events(jobs, record, limits.max_seconds),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
