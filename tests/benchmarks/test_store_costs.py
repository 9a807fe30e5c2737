"""What a job costs Redis: the job store's two transitions against plain Dramatiq's result write.

Both run against a redis-server of this test's own (nothing else talks to it, so `INFO commandstats` counts only
them), from 8 threads as a worker process's would. The store's side is what a worker writes for a job another
service sent: `active` carrying the whole record, then `completed` with the result, through the job store's batcher;
the retention count is reached first, so pruning is part of the steady state. Plain Dramatiq's side is
`RedisBackend.store_result` (a pipeline of DEL, LPUSH, PEXPIRE). Prints Redis CPU (µs) and commands per job.

The assertion guards the scripts' size: at most 26 Redis commands a job (23 when it was written; 29 before pruning
went in batches). It fails when a change adds work to every job's write; say why in the README's "What a job
costs" when raising it.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import dramatiq
import pytest
import redis
from dramatiq.results.backends.redis import RedisBackend

from service.domain.clock import now_ms
from service.domain.states import JobState
from service.store.job_store import JobStore, Retention
from tests.support.own_redis import OwnRedis

JOBS = int(os.environ.get("BENCH_STORE_JOBS", "6000"))
THREADS = 8
MAX_COMMANDS_PER_JOB = 26


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis().start()
    try:
        yield server
    finally:
        server.close()


def in_threads(job_ids: list[str], run_one: Callable[[str], None]) -> None:
    def work(mine: list[str]) -> None:
        for job_id in mine:
            run_one(job_id)

    threads = [threading.Thread(target=work, args=(job_ids[n::THREADS],)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def measured(client: redis.Redis, job_ids: list[str], run_one: Callable[[str], None]) -> tuple[float, float, float]:
    """(Redis µs per job, Redis commands per job with the scripts' inner commands, this process's CPU µs per job)."""
    client.config_resetstat()
    cpu = time.process_time()
    in_threads(job_ids, run_one)
    cpu = time.process_time() - cpu
    stats = client.info("commandstats")
    script = stats.get("cmdstat_evalsha", {"usec": 0, "calls": 0})
    usec = sum(v["usec"] for k, v in stats.items() if k not in ("cmdstat_evalsha", "cmdstat_config"))
    usec = max(usec, script["usec"])  # a script's time includes its commands'; plain writes have no script
    commands = sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_evalsha", "cmdstat_config"))
    return usec / len(job_ids), commands / len(job_ids), cpu * 1e6 / len(job_ids)


def test_what_a_job_costs_redis_against_plain_dramatiqs_result_write(own_redis: OwnRedis) -> None:
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    store = JobStore(client, Retention(completed_count=1000))
    backend = RedisBackend(client=redis.Redis.from_url(own_redis.url))  # type: ignore[no-untyped-call]

    def store_one(job_id: str) -> None:
        created = now_ms()
        record = {"jobId": job_id, "actor": "bench_noop", "queue": "bench", "data": '{"counter": "c"}',
                  "priority": "normal", "createdMs": created, "createdAt": "2026-12-03T00:00:00.000Z"}  # fmt: skip
        active = store.transition(job_id, JobState.ACTIVE, create=record, lease=("bench:1", 30_000))
        store.transition(job_id, JobState.COMPLETED, fields={"result": "null", "progress": 100}, token=active.token)

    def plain_one(job_id: str) -> None:
        message = dramatiq.Message(queue_name="bench", actor_name="bench_noop", args=(), kwargs={}, options={},
                                   message_id=job_id)  # fmt: skip
        backend.store_result(message, None, 600_000)  # type: ignore[no-untyped-call]

    in_threads([uuid.uuid4().hex for _ in range(1200)], store_one)  # past the retention count: pruning runs too
    rounds = []
    for _ in range(3):
        started = time.monotonic()
        ours = measured(client, [uuid.uuid4().hex for _ in range(JOBS)], store_one)
        plain = measured(client, [uuid.uuid4().hex for _ in range(JOBS)], plain_one)
        rounds.append((ours, plain, time.monotonic() - started))
    ours_us = sorted(r[0][0] for r in rounds)[1]
    plain_us = sorted(r[1][0] for r in rounds)[1]
    commands = sorted(r[0][1] for r in rounds)[1]
    ours_cpu, plain_cpu = sorted(r[0][2] for r in rounds)[1], sorted(r[1][2] for r in rounds)[1]
    print(
        f"\nRedis per job, {JOBS} jobs x 3 rounds, {THREADS} threads, own redis-server (medians)\n"
        f"  job store (active with record + completed): {ours_us:.1f} µs, {commands:.1f} commands\n"
        f"  plain Dramatiq result write:                {plain_us:.1f} µs, {sorted(r[1][1] for r in rounds)[1]:.1f}"
        f" commands\n  ratio store/plain: {ours_us / plain_us:.1f}\n"
        f"  the writing process's CPU per job: store {ours_cpu:.0f} µs, plain {plain_cpu:.0f} µs"
    )
    assert commands <= MAX_COMMANDS_PER_JOB, f"{commands:.1f} Redis commands a job, over {MAX_COMMANDS_PER_JOB}"
