"""What waiting for a replica costs a job: the job store's two transitions with REDIS_WAIT_REPLICAS=1 beside 0.

A primary and two replicas of this test's own (loopback, as a primary and its replicas on one LAN would be, minus
the wire), 8 threads writing as a worker process's would: `active` with the record and the lease, then `completed`
with the result, through the job store's batcher. With the wait, every round trip that carries a completion adds a
WAIT, which returns once a replica has acknowledged the write (the primary asks its replicas for an acknowledgement
as soon as a client waits). Alternating rounds; prints, for each side, jobs a second, the time one completion takes
(median and 99th percentile, as a worker thread sees it before it may acknowledge the message), the primary's CPU
per job and WAITs per job (fewer than one: WAIT is per round trip, and a round trip carries the completions of
several threads).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from service.domain.clock import now_ms
from service.domain.states import JobState
from service.store.connection import connect_redis
from service.store.job_store import JobStore, Retention
from tests.support.own_redis import OwnRedis

JOBS = int(os.environ.get("BENCH_WAIT_JOBS", "6000"))
ROUNDS = int(os.environ.get("BENCH_WAIT_ROUNDS", "3"))
THREADS = 8


@pytest.fixture
def primary_and_replicas() -> Iterator[tuple[OwnRedis, list[OwnRedis]]]:
    primary = OwnRedis("--repl-diskless-sync-delay", "0").start()
    replicas: list[OwnRedis] = []
    try:
        for _ in range(2):
            replicas.append(OwnRedis("--replicaof", "127.0.0.1", str(primary.port)).start())
        deadline = time.monotonic() + 30
        while primary.client().info("replication")["connected_slaves"] < 2:
            assert time.monotonic() < deadline, "the replicas did not connect"
            time.sleep(0.05)
        yield primary, replicas
    finally:
        for server in [*replicas, primary]:
            server.close()


def one_round(store: JobStore, primary: OwnRedis) -> dict[str, float]:
    ids = [uuid.uuid4().hex for _ in range(JOBS)]
    latencies: list[float] = []
    lock = threading.Lock()

    def work(mine: list[str]) -> None:
        own: list[float] = []
        for job_id in mine:
            created = now_ms()
            record = {"jobId": job_id, "actor": "bench_noop", "queue": "bench", "data": '{"work_ms": 0}',
                      "priority": "normal", "createdMs": created, "createdAt": "2026-12-03T00:00:00.000Z"}  # fmt: skip
            active = store.transition(job_id, JobState.ACTIVE, create=record, lease=("bench:1", 30_000))
            began = time.perf_counter()
            store.transition(job_id, JobState.COMPLETED, fields={"result": "null", "progress": 100}, token=active.token)
            own.append(time.perf_counter() - began)
        with lock:
            latencies.extend(own)

    client = primary.client()
    client.config_resetstat()
    cpu_before = client.info("cpu")
    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(ids[n::THREADS],)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    cpu_after = client.info("cpu")
    cpu = sum(cpu_after[k] - cpu_before[k] for k in ("used_cpu_user", "used_cpu_sys"))
    waits = client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)
    latencies.sort()
    return {
        "rate": JOBS / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "cpu_us": cpu * 1e6 / JOBS,
        "waits": waits / JOBS,
    }


def test_what_waiting_for_a_replica_costs_a_job(primary_and_replicas: tuple[OwnRedis, list[OwnRedis]]) -> None:
    primary, _ = primary_and_replicas
    retention = Retention(completed_count=1000)
    sides = {
        "no wait (REDIS_WAIT_REPLICAS=0)": JobStore(connect_redis(primary.url), retention, replicas_to_wait=0),
        "wait for 1 replica": JobStore(connect_redis(primary.url), retention, replicas_to_wait=1),
    }
    for store in sides.values():
        one_round(store, primary)  # warm-up, past the retention count: pruning runs too
    rounds: dict[str, list[dict[str, float]]] = {label: [] for label in sides}
    for n in range(ROUNDS):
        order = list(sides.items())
        for label, store in order if n % 2 == 0 else order[::-1]:
            rounds[label].append(one_round(store, primary))

    def median(label: str, key: str) -> float:
        return float(statistics.median(r[key] for r in rounds[label]))

    print(f"\nWAIT on final outcomes, {JOBS} jobs x {ROUNDS} rounds, {THREADS} threads, primary + 2 replicas (medians)")
    print("  side                              jobs/s   completion p50   p99      primary CPU/job  WAITs/job")
    for label in sides:
        print(
            f"  {label:33} {median(label, 'rate'):7.0f}   {median(label, 'p50_ms'):6.2f} ms     "
            f"{median(label, 'p99_ms'):6.2f} ms  {median(label, 'cpu_us'):6.1f} µs        {median(label, 'waits'):.2f}"
        )
    plain, waiting = list(sides)
    print(f"  rate with the wait / without: {median(waiting, 'rate') / median(plain, 'rate'):.2f}")
    assert median(plain, "waits") == 0
    assert 0 < median(waiting, "waits") <= 1
