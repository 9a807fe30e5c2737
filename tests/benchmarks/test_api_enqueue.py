"""HTTP enqueue rate (single and batch) against in-process `actor.send()` with confirms, in the same run, and the
round trip POST -> GET shows completed for `ping`, at p50 and p99. Run by `make bench`; prints its figures.

Targets (issue 3): batch >= 3x and single HTTP >= 0.5x the in-process single-send rate; round trip p50 <= 5 ms and
p99 <= 25 ms on an idle machine. This machine is shared, so the figures are reported, not asserted.

The clients are the standard library's keep-alive `http.client`: it costs a third of httpx's CPU a request (0.2
against 0.6 ms here), and on two cores whatever the client burns is taken from the server being measured.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx

from actors.ping import ping
from service.bootstrap import broker
from tests.support.api_server import api_server
from tests.support.workers import WorkerProcess

SINGLES = int(os.environ.get("BENCH_API_SINGLES", "1000"))
BATCHES = int(os.environ.get("BENCH_API_BATCHES", "20"))
BATCH_SIZE = int(os.environ.get("BENCH_API_BATCH_SIZE", "100"))
CLIENTS = int(os.environ.get("BENCH_API_CLIENTS", "8"))
ROUND_TRIPS = int(os.environ.get("BENCH_API_ROUND_TRIPS", "300"))
QUEUE = ping.queue_name


def in_process_rate() -> float:
    started = time.perf_counter()
    for i in range(SINGLES):
        ping.send(i=i)
    return SINGLES / (time.perf_counter() - started)


class KeepAlive:
    """One persistent HTTP/1.1 connection: a request costs the server's work and little else."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())

    def close(self) -> None:
        self.connection.close()


def http_single_rate(url: str, clients: int) -> float:
    per_client = SINGLES // clients

    def post_many(_: int) -> None:
        http = KeepAlive(url)
        try:
            for i in range(per_client):
                assert http.call("POST", "/jobs/ping", {"i": i})[0] == 202
        finally:
            http.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(post_many, range(clients)))
    return per_client * clients / (time.perf_counter() - started)


def http_batch_rate(url: str) -> float:
    body = [{"i": i} for i in range(BATCH_SIZE)]
    with httpx.Client(base_url=url, timeout=60) as http:
        started = time.perf_counter()
        for _ in range(BATCHES):
            response = http.post("/jobs/ping/batch", json=body)
            assert response.status_code == 202 and len(response.json()["jobIds"]) == BATCH_SIZE
        return BATCHES * BATCH_SIZE / (time.perf_counter() - started)


def round_trips_ms(url: str) -> list[float]:
    took = []
    http = KeepAlive(url)
    try:
        for i in range(ROUND_TRIPS):
            started = time.perf_counter()
            job_id = http.call("POST", "/jobs/ping", {"i": i})[1]["jobId"]
            while http.call("GET", f"/jobs/{job_id}")[1]["state"] != "completed":
                time.sleep(0.0005)
            took.append((time.perf_counter() - started) * 1000)
    finally:
        http.close()
    return took


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def test_api_enqueue_rate_and_round_trip_latency() -> None:
    broker.declare_queue(QUEUE, ensure=True)
    broker.flush(QUEUE)
    with api_server() as url:
        httpx.post(f"{url}/jobs/ping", json={}).raise_for_status()  # warm up: connections, queue declarations
        baseline = in_process_rate()
        broker.flush(QUEUE)
        single_one = http_single_rate(url, 1)
        broker.flush(QUEUE)
        single_many = http_single_rate(url, CLIENTS)
        broker.flush(QUEUE)
        batch = http_batch_rate(url)
        broker.flush(QUEUE)
        with WorkerProcess(processes=1, threads=8, queues=[QUEUE]):
            round_trips_ms(url)[:0]  # warm up the worker
            latencies = round_trips_ms(url)
    broker.flush(QUEUE)
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    print()
    print(f"in-process ping.send() with confirms, 1 thread : {baseline:8.0f} jobs/s  (baseline)")
    print(
        f"HTTP POST /jobs/ping, 1 client                : {single_one:8.0f} jobs/s  ratio {single_one / baseline:.2f}"
    )
    print(
        f"HTTP POST /jobs/ping, {CLIENTS} clients               : {single_many:8.0f} jobs/s  "
        f"ratio {single_many / baseline:.2f}  (target >= 0.5)"
    )
    print(
        f"HTTP POST /jobs/ping/batch ({BATCH_SIZE} a batch)       : {batch:8.0f} jobs/s  "
        f"ratio {batch / baseline:.2f}  (target >= 3)"
    )
    print(
        f"round trip POST -> GET completed, ping, n={ROUND_TRIPS}: p50 {p50:.1f} ms  p99 {p99:.1f} ms (targets 5 / 25)"
    )
    assert baseline > 0 and single_one > 0 and batch > 0 and len(latencies) == ROUND_TRIPS
