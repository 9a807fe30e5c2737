"""The job-log benchmark's jobs: one that logs nothing and one that logs `lines` lines, each counting itself done."""

from __future__ import annotations

import logging

from pydantic import BaseModel

import actors  # noqa: F401
from service.bootstrap import redis_client
from service.worker.typed_actor import job

logger = logging.getLogger("bench.chatty")


class LinesPayload(BaseModel):
    counter: str
    lines: int = 0


@job(LinesPayload, queue="bench-logs")
def log_lines(payload: LinesPayload) -> None:
    for n in range(payload.lines):
        logger.info("processed item %d of %d", n + 1, payload.lines)
    redis_client.incr(payload.counter)
