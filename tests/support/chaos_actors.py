"""Jobs for the fault tests: they count every real execution in a Redis that no injected fault touches."""

from __future__ import annotations

import os
import resource
import signal
import time
import uuid
from typing import Literal

import redis
from pydantic import BaseModel, Field

from service.domain.context import current_job
from service.worker.typed_actor import job
from tests.support import test_actors  # noqa: F401  (sets the broker up and declares the other test jobs)

QUEUE = "chaos"
#: How long `tally` sleeps at a time: an interruption lands within this.
NAP_S = 0.05

#: The tally has to survive the faults it measures, so it talks to the real Redis, never through a proxy.
tally_client = redis.Redis.from_url(
    os.environ.get("TALLY_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
    decode_responses=True,
)


def _limit_memory() -> None:
    """CHAOS_MEMORY_LIMIT_MB caps this process's heap at what it uses now plus that much (RLIMIT_DATA)."""
    extra_mb = os.environ.get("CHAOS_MEMORY_LIMIT_MB")
    if not extra_mb:
        return
    with open("/proc/self/status") as status:
        used_kb = next(int(line.split()[1]) for line in status if line.startswith("VmData:"))
    limit = used_kb * 1024 + int(extra_mb) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))


_limit_memory()


def tally_key(run: str, what: str) -> str:
    return f"tally:{run}:{what}"


class TallyPayload(BaseModel):
    run: str = Field(description="names the test run, so counts of different runs never mix")
    ms: int = Field(20, ge=0, le=10_000)


@job(TallyPayload, queue=QUEUE, max_retries=3, retry_delays=[100, 200, 300])
def tally(payload: TallyPayload) -> int:
    """Works for `ms`, recording when it started and when it ran to the end, with the process that ran it.

    Both entries carry a token of this execution, so a test can pair each start with its end and tell when two
    executions of one job overlapped in time (tests/reliability/harness.py `Tally`).
    """
    context = current_job.get()
    job_id = context.job_id if context else "unknown"
    pid = os.getpid()
    token = uuid.uuid4().hex[:12]  # ties an execution's end to its start
    # The start time too, so a test can tell two executions of one job that overlapped from two in a row.
    tally_client.rpush(tally_key(payload.run, "starts"), f"{job_id} {pid} {time.time():.4f} {token}")
    try:
        # In short naps: an interruption (a lost lease, a time limit) is raised between two bytecodes, never inside
        # a sleep, so one long sleep would run on past it and look like an execution alongside the next one.
        deadline = time.monotonic() + payload.ms / 1000
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, NAP_S))
    except BaseException:
        # Interrupted (time limit, lost lease, shutdown): this execution stopped here and did not complete.
        tally_client.rpush(tally_key(payload.run, "stopped"), f"{job_id} {pid} {time.time():.4f} {token}")
        raise
    tally_client.rpush(tally_key(payload.run, "done"), f"{job_id} {pid} {time.time():.4f} {token}")
    return pid


class SpinPayload(BaseModel):
    seconds: float = Field(3600, gt=0)
    #: "cpu" burns CPU in pure Python; "sleep" naps 50 ms at a time, forever as far as anyone can tell.
    mode: Literal["cpu", "sleep"] = "cpu"


@job(SpinPayload, queue=QUEUE, max_retries=0, time_limit=6_000)
def spin(payload: SpinPayload) -> None:
    """Never returns on its own: only the time limit stops it."""
    deadline = time.monotonic() + payload.seconds
    counter = 0
    while time.monotonic() < deadline:
        if payload.mode == "sleep":
            time.sleep(0.05)
        counter += 1


class HogPayload(BaseModel):
    megabytes: int = Field(ge=1)


@job(HogPayload, queue=QUEUE, max_retries=0, time_limit=30_000)
def hog(payload: HogPayload) -> int:
    """Allocates memory 16 MB at a time until it has `megabytes` (or the process limit says no)."""
    chunks = [bytearray(16 * 1024 * 1024) for _ in range(payload.megabytes // 16 + 1)]
    return len(chunks)


class CrashPayload(BaseModel):
    run: str


@job(CrashPayload, queue=QUEUE, max_retries=3)
def crash(payload: CrashPayload) -> None:
    """Kills the process running it, as the kernel's out-of-memory killer would: SIGKILL, no cleanup."""
    tally_client.rpush(tally_key(payload.run, "starts"), str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)
