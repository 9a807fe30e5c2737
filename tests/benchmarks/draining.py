"""Drains a filled queue with a real `dramatiq` command and measures it: rate, and CPU per job of the workers and of
everything else the jobs make busy (RabbitMQ, Redis, the `dramatiq` parent that relays the workers' logs)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.support.workers import ROOT, WorkerProcess

JOBS = int(os.environ.get("BENCH_JOBS", "3000"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@dataclass(frozen=True)
class Drain:
    rate: float  #: jobs per second, from the first job done to the last
    worker_ms: float  #: CPU ms per job of the worker processes
    machine_ms: float  #: CPU ms per job of the workers, their parent, RabbitMQ and Redis together


def fill(module: str, actor: str, call: str, env: dict[str, str] | None = None) -> None:
    code = f"from {module} import {actor}\nfor _ in range({JOBS}): {actor}.send({call})\n"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**ENV, **(env or {})})


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far: a measure that other load on the machine cannot skew."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended since it was listed (a short-lived child): its time went to its parent's children
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def servers() -> list[int]:
    """RabbitMQ's and Redis's processes on this machine (none if they run elsewhere, e.g. in containers)."""
    found = []
    for pattern in ("beam.smp", "redis-server"):
        out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        found += [int(p) for p in out[:1]]
    return found


def drain(client: redis.Redis, counter: str, module: str, queue: str, env: dict[str, str] | None = None) -> Drain:
    """The queue is full first; 2 processes x 5 threads."""
    worker = WorkerProcess(processes=2, threads=5, queues=[queue], env=env)
    worker.command = [sys.executable, "-m", "dramatiq", module, "--processes", "2", "--threads", "5",
                      "--queues", queue]  # fmt: skip
    worker.start()
    assert worker.proc is not None
    workers = worker.child_pids()
    others = [worker.proc.pid, *servers()]
    try:
        first = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = int(client.get(counter) or 0)
            if done and first is None:
                first = (time.monotonic(), done, cpu_seconds(workers), cpu_seconds(others))
            if done >= JOBS:
                assert first is not None
                jobs = JOBS - first[1]
                worker_ms = (cpu_seconds(workers) - first[2]) * 1000 / jobs
                others_ms = (cpu_seconds(others) - first[3]) * 1000 / jobs
                return Drain(jobs / (time.monotonic() - first[0]), worker_ms, worker_ms + others_ms)
            time.sleep(0.005)
        raise TimeoutError(f"{counter}: only {client.get(counter)!r} of {JOBS} done")
    finally:
        worker.stop()
