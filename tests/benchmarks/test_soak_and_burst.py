"""Soak (100,000 jobs through two worker processes) and burst (20,000 jobs through the batch API), reported.

Soak: worker RSS at the start and at the end (goal: under 10 % growth), the job store's memory per retained job,
and the store's size once retention has run (bounded by JOB_RETENTION_COMPLETED_COUNT). Plain Dramatiq runs the same
soak side by side for the RSS ratio. Burst: the peak queue depth and the time to drain. SOAK_JOBS and BURST_JOBS
scale them down for a quick look.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from service.bootstrap import broker, redis_client
from service.web import app
from tests.benchmarks import bench_actors  # noqa: F401  (declares service_noop for the API)
from tests.support.workers import ROOT, WorkerProcess

SOAK_JOBS = int(os.environ.get("SOAK_JOBS", "100000"))
BURST_JOBS = int(os.environ.get("BURST_JOBS", "20000"))
#: Items per batch request: 5,000 small payloads stay under MAX_PAYLOAD_BYTES (256 KiB) for the request body.
BATCH = 5000
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def workers(module: str, queue: str) -> WorkerProcess:
    worker = WorkerProcess(processes=2, threads=5, queues=[queue])
    worker.command = [sys.executable, "-m", "dramatiq", module, "--processes", "2", "--threads", "5",
                      "--queues", queue]  # fmt: skip
    return worker


def start_filling(module: str, actor: str, call: str, count: int) -> subprocess.Popen[bytes]:
    code = f"from {module} import {actor}\nfor _ in range({count}): {actor}.send({call})\n"
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=ENV)


def wait_count(client: redis.Redis, counter: str, target: int, timeout: float, tick: Callable[[], None]) -> float:
    started = time.monotonic()
    while int(client.get(counter) or 0) < target:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{counter}: {client.get(counter)} of {target}")
        tick()
        time.sleep(0.5)
    return time.monotonic() - started


def store_bytes(client: redis.Redis) -> dict[str, int]:
    """Bytes held by this run's database: the job store (jobs:*) and everything else (results, counters)."""
    sizes = {"jobs": 0, "other": 0, "other keys": 0}
    for key in client.scan_iter(count=1000):
        family = "jobs" if str(key).startswith("jobs:") else "other"
        sizes[family] += int(client.memory_usage(key, samples=0) or 0)
        sizes["other keys"] += family == "other"
    return sizes


def soak(module: str, actor: str, call: str, queue: str, counter: str) -> tuple[int, int, float]:
    """(RSS after warm-up, RSS at the end, seconds)."""
    with workers(module, queue) as worker:
        pids = worker.child_pids()
        filler = start_filling(module, actor, call, SOAK_JOBS)
        warm = min(2000, SOAK_JOBS // 10)
        wait_count(redis_client, counter, warm, 600, lambda: None)
        start = rss_kb(pids)
        took = wait_count(redis_client, counter, SOAK_JOBS, 3600, lambda: None)
        end = rss_kb(pids)
        filler.wait(60)
    return start, end, took


@pytest.mark.timeout(7200)
def test_soak_keeps_worker_memory_and_the_store_bounded() -> None:
    plain = soak("tests.benchmarks.plain_app", "plain_noop", "'soak:plain'", "bench-plain", "soak:plain")
    ours = soak("tests.benchmarks.bench_actors", "service_noop", "counter='soak:ours'", "bench", "soak:ours")
    retained = int(redis_client.zcard("jobs:index"))
    sizes = store_bytes(redis_client)
    growth = {name: (end - start) / start * 100 for name, (start, end, _) in (("plain", plain), ("ours", ours))}
    print(
        f"\nsoak, {SOAK_JOBS} jobs each, 2 processes x 5 threads\n"
        f"  plain dramatiq : RSS {plain[0] / 1024:.0f} -> {plain[1] / 1024:.0f} MB ({growth['plain']:+.1f} %), "
        f"{plain[2]:.0f} s\n"
        f"  service stack  : RSS {ours[0] / 1024:.0f} -> {ours[1] / 1024:.0f} MB ({growth['ours']:+.1f} %, "
        f"goal < 10 %), {ours[2]:.0f} s\n"
        f"  job store after retention: {retained} records kept of {SOAK_JOBS}, {sizes['jobs'] / 1024:.0f} KB "
        f"({sizes['jobs'] / max(retained, 1):.0f} bytes per retained job); besides the store "
        f"{sizes['other keys']} keys, {sizes['other'] / 1024:.0f} KB (Dramatiq results of both sides, counters)"
    )
    assert retained <= 1000 + 50  # JOB_RETENTION_COMPLETED_COUNT, plus a few still being pruned


@pytest.mark.timeout(3600)
def test_a_burst_through_the_batch_api_drains() -> None:
    depth = [0]
    stop = threading.Event()

    def watch_depth() -> None:
        channel = broker.channel
        while not stop.wait(0.2):
            depth[0] = max(depth[0], int(channel.queue_declare("bench", passive=True).method.message_count))

    with workers("tests.benchmarks.bench_actors", "bench"), TestClient(app) as api:
        broker.declare_queue("bench", ensure=True)
        watcher = threading.Thread(target=watch_depth, daemon=True)
        watcher.start()
        started = time.monotonic()
        sent = 0
        while sent < BURST_JOBS:
            size = min(BATCH, BURST_JOBS - sent)
            response = api.post("/jobs/service_noop/batch", json=[{"counter": "burst:ours"}] * size)
            assert response.status_code == 202, response.text
            sent += size
        enqueued = time.monotonic() - started
        wait_count(redis_client, "burst:ours", BURST_JOBS, 3600, lambda: None)
        drained = time.monotonic() - started
        stop.set()
        watcher.join(5)
    print(
        f"\nburst, {BURST_JOBS} jobs through POST /jobs/service_noop/batch ({BATCH} a request), "
        "2 processes x 5 threads\n"
        f"  enqueued in {enqueued:.1f} s ({BURST_JOBS / enqueued:.0f} jobs/s), peak queue depth {depth[0]}, "
        f"drained {drained:.1f} s after the first request ({BURST_JOBS / drained:.0f} jobs/s)"
    )
    assert depth[0] > 0
