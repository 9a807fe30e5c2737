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

import pytest
import redis

from tests.support.workers import ROOT, WorkerProcess

JOBS = int(os.environ.get("BENCH_JOBS", "3000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def fill(module: str, actor: str, call: str) -> None:
    code = f"from {module} import {actor}\nfor _ in range({JOBS}): {actor}.send({call})\n"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env=ENV)


def drain_rate(client: redis.Redis, counter: str, module: str, queue: str) -> float:
    """Jobs per second from the first job done to the last, with the queue full before the worker starts."""
    worker = WorkerProcess(processes=2, threads=5, queues=[queue])
    worker.command = [sys.executable, "-m", "dramatiq", module, "--processes", "2", "--threads", "5",
                      "--queues", queue]  # fmt: skip
    worker.start()
    try:
        first = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = int(client.get(counter) or 0)
            if done and first is None:
                first = (time.monotonic(), done)
            if done >= JOBS:
                assert first is not None
                return (JOBS - first[1]) / (time.monotonic() - first[0])
            time.sleep(0.005)
        raise TimeoutError(f"{counter}: only {client.get(counter)} of {JOBS} done")
    finally:
        worker.stop()


@pytest.mark.parametrize("work_ms", [0, 5])
def test_worker_throughput_against_plain_dramatiq(work_ms: float) -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    plain: list[float] = []
    ours: list[float] = []
    for n in range(ROUNDS):
        fill("tests.benchmarks.plain_app", "plain_noop", f"'bench:plain:{work_ms}:{n}', work_ms={work_ms}")
        plain.append(drain_rate(client, f"bench:plain:{work_ms}:{n}", "tests.benchmarks.plain_app", "bench-plain"))
        fill("tests.benchmarks.bench_actors", "service_noop", f"counter='bench:ours:{work_ms}:{n}', work_ms={work_ms}")
        ours.append(drain_rate(client, f"bench:ours:{work_ms}:{n}", "tests.benchmarks.bench_actors", "bench"))
    ratio = statistics.median(ours) / statistics.median(plain)
    print(
        f"\nworker throughput, {JOBS} jobs of {work_ms} ms x {ROUNDS} rounds, 2 processes x 5 threads\n"
        f"  plain dramatiq : {', '.join(f'{r:.0f}' for r in plain)} jobs/s (median {statistics.median(plain):.0f})\n"
        f"  service stack  : {', '.join(f'{r:.0f}' for r in ours)} jobs/s (median {statistics.median(ours):.0f})\n"
        f"  ratio service/plain: {ratio:.2f} (target >= 0.9)"
    )
    assert ratio > 0
