"""Test-only jobs that log while they run, on a queue of their own ("test-logs"): their lines are kept with the job."""

from __future__ import annotations

import logging
import time

from pydantic import BaseModel, Field

import actors  # noqa: F401  (sets the broker up and declares the real jobs first)
from service.worker.progress import report_progress
from service.worker.typed_actor import job

QUEUE = "test-logs"
logger = logging.getLogger("tests.chatty")


class ChattyPayload(BaseModel):
    lines: int = Field(5, ge=0)
    seconds: float = Field(0.0, ge=0)  #: spread over the lines
    text: str = "line"  #: each line is "<text> <n>"
    fail: bool = False


@job(ChattyPayload, queue=QUEUE, max_retries=0, time_limit=60_000)
def chatty(payload: ChattyPayload) -> int:
    """Logs `lines` lines (one with a traceback when `fail`), reporting progress, then returns how many."""
    for n in range(1, payload.lines + 1):
        logger.info("%s %d", payload.text, n)
        if payload.seconds:
            time.sleep(payload.seconds / payload.lines)
            report_progress(100 * n / payload.lines, f"line {n} of {payload.lines}")
    if payload.fail:
        try:
            raise ValueError(f"{payload.text} went wrong")
        except ValueError:
            logger.exception("could not finish")
            raise
    return payload.lines


@job(ChattyPayload, queue=QUEUE, max_retries=0, time_limit=60_000)
def quiet(payload: ChattyPayload) -> None:
    """Logs nothing (and returns nothing, which Dramatiq's results middleware would log about): keeps no lines."""
