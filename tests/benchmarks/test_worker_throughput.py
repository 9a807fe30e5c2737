"""Noop jobs drained by `dramatiq service.actors` with the full middleware stack, against plain Dramatiq.

Both sides: the same RabbitMQ and Redis, Redis results, 2 processes x 5 threads, a job that increments a counter.
Rounds alternate so that drift on a shared machine hits both sides alike. Prints the ratio; the target is >= 0.9.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.support.workers import ROOT, WorkerProcess

JOBS = int(os.environ.get("BENCH_JOBS", "3000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def fill(module: str, actor: str, call: str) -> None:
    code = f"from {module} import {actor}\nfor _ in range({JOBS}): {actor}.send({call})\n"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env=ENV)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far: a measure that other load on the machine cannot skew."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def drain_rate(client: redis.Redis, counter: str, module: str, queue: str) -> tuple[float, float]:
    """(jobs per second from the first job done to the last, worker CPU ms per job); the queue is full first."""
    worker = WorkerProcess(processes=2, threads=5, queues=[queue])
    worker.command = [sys.executable, "-m", "dramatiq", module, "--processes", "2", "--threads", "5",
                      "--queues", queue]  # fmt: skip
    worker.start()
    pids = worker.child_pids()
    cpu_before = cpu_seconds(pids)
    try:
        first = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = int(client.get(counter) or 0)
            if done and first is None:
                first = (time.monotonic(), done)
            if done >= JOBS:
                assert first is not None
                rate = (JOBS - first[1]) / (time.monotonic() - first[0])
                return rate, (cpu_seconds(pids) - cpu_before) * 1000 / JOBS
            time.sleep(0.005)
        raise TimeoutError(f"{counter}: only {client.get(counter)} of {JOBS} done")
    finally:
        worker.stop()


@pytest.mark.parametrize("work_ms", [0, 5])
def test_worker_throughput_against_plain_dramatiq(work_ms: float) -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    plain: list[float] = []
    ours: list[float] = []
    plain_cpu: list[float] = []
    ours_cpu: list[float] = []
    for n in range(ROUNDS):
        fill("tests.benchmarks.plain_app", "plain_noop", f"'bench:plain:{work_ms}:{n}', work_ms={work_ms}")
        rate, cpu = drain_rate(client, f"bench:plain:{work_ms}:{n}", "tests.benchmarks.plain_app", "bench-plain")
        plain.append(rate)
        plain_cpu.append(cpu)
        fill("tests.benchmarks.bench_actors", "service_noop", f"counter='bench:ours:{work_ms}:{n}', work_ms={work_ms}")
        rate, cpu = drain_rate(client, f"bench:ours:{work_ms}:{n}", "tests.benchmarks.bench_actors", "bench")
        ours.append(rate)
        ours_cpu.append(cpu)
    ratio = statistics.median(ours) / statistics.median(plain)
    cpu_ratio = statistics.median(plain_cpu) / statistics.median(ours_cpu)
    print(
        f"\nworker throughput, {JOBS} jobs of {work_ms} ms x {ROUNDS} rounds, 2 processes x 5 threads\n"
        f"  plain dramatiq : {', '.join(f'{r:.0f}' for r in plain)} jobs/s (median {statistics.median(plain):.0f})\n"
        f"  service stack  : {', '.join(f'{r:.0f}' for r in ours)} jobs/s (median {statistics.median(ours):.0f})\n"
        f"  ratio service/plain: {ratio:.2f} (target >= 0.9)\n"
        f"  worker CPU per job: plain {statistics.median(plain_cpu):.2f} ms, service "
        f"{statistics.median(ours_cpu):.2f} ms (ratio plain/service {cpu_ratio:.2f}, the machine-independent figure)"
    )
    assert ratio > 0
