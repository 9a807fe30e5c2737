"""Jobs for the lease-fencing tests: each notes when it started, stopped and did its one side effect, in a Redis
that no injected fault touches, so a test can tell from timestamps whether two attempts ever ran alongside."""

from __future__ import annotations

import os
import time

from pydantic import BaseModel, Field

from service.domain.context import current_job
from service.worker.typed_actor import job
from tests.support.chaos_actors import tally_client, tally_key

QUEUE = "fencing"


class WorkPayload(BaseModel):
    run: str
    ms: int = Field(ge=0, le=60_000)
    #: fail the first attempt (after the work), so a retry has to be published
    fail_first: bool = False


def events(run: str) -> list[tuple[str, int, float]]:
    """(what, pid, unix time) of every start, stop before the end, side effect and failure, in order."""
    rows = [line.split() for line in tally_client.lrange(tally_key(run, "events"), 0, -1)]
    return [(what, int(pid), float(at)) for what, pid, at in rows]


def _note(run: str, what: str) -> None:
    tally_client.rpush(tally_key(run, "events"), f"{what} {os.getpid()} {time.time():.4f}")


@job(WorkPayload, queue=QUEUE, max_retries=2, retry_delays=[200], time_limit=1_500)
def fenced_work(payload: WorkPayload) -> str:
    """Works for `ms` (in small steps, so an interruption lands at once), then does its side effect once."""
    _note(payload.run, "start")
    finished = False
    try:
        deadline = time.monotonic() + payload.ms / 1000
        while time.monotonic() < deadline:
            time.sleep(0.01)
        if payload.fail_first and tally_client.incr(tally_key(payload.run, "failures")) == 1:
            _note(payload.run, "failure")
            finished = True
            raise RuntimeError("planned failure")
        _note(payload.run, "effect")
        context = current_job.get()
        if context is not None:  # when, per job, for the figure of how long a finished job waits for its record
            tally_client.hset(tally_key(payload.run, "effect_at"), context.job_id, f"{time.time():.4f}")
        finished = True
        return "done"
    finally:
        if not finished:
            _note(payload.run, "stopped")
