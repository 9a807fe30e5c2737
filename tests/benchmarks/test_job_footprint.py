"""What one job costs the servers, end to end: Redis commands, CPU, bytes and memory, and RabbitMQ frames and bytes.

The README's "Scaling" figures. Jobs go in through the service layer the API uses (`Jobs.enqueue`, record then
confirmed publish) from 16 threads and are run by a real worker (2 processes x 8 threads, no-op jobs); Redis is a
primary of this test's own with one replica (so its counters see only this, and the replication stream is
measured), and every RabbitMQ connection runs through a proxy that counts AMQP frames
(tests/benchmarks/amqp_counter.py). The senders' share is measured on its own (the worker stopped), and the
worker's is the rest.

From Redis: commands a job (the scripts' inner commands included; EVALSHA counted apart), the primary's CPU a job
(user + system, its network work included: what bounds one primary), bytes from and to clients, the replication
stream a job (what each replica receives), and memory a retained record holds (record, history, indexes and its
share of the event stream). The ceiling of one primary is one core divided by its CPU a job: a bound from below,
since the load this machine can put on Redis is far from what saturates it, and under more load the batcher puts
more transitions into each round trip (tests/benchmarks/test_store_costs.py gives the time inside Redis alone).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from service.ops.jobs import Jobs
from service.settings import get_settings
from tests.benchmarks import bench_actors  # noqa: F401  (declares bench_noop, which the worker runs)
from tests.benchmarks.amqp_counter import AmqpCounter
from tests.reliability.harness import jobs_using
from tests.support.own_redis import OwnRedis
from tests.support.workers import WorkerProcess

JOBS = int(os.environ.get("BENCH_FOOTPRINT_JOBS", "3000"))
SENDERS = int(os.environ.get("BENCH_FOOTPRINT_SENDERS", "16"))
WORKER_PROCESSES = 2
QUEUE = "bench"


@pytest.fixture
def redis_pair() -> Iterator[OwnRedis]:
    primary = OwnRedis("--repl-diskless-sync-delay", "0").start()
    replica = OwnRedis("--replicaof", "127.0.0.1", str(primary.port))
    try:
        replica.start()
        deadline = time.monotonic() + 30
        while replica.client().info("replication")["master_link_status"] != "up":
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.05)
        yield primary
    finally:
        replica.close()
        primary.close()


class Snapshot:
    """Redis's counters at one moment."""

    def __init__(self, server: OwnRedis) -> None:
        client = server.client()
        info: dict[str, Any] = client.info("all")
        self.cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        self.net_in = int(info["total_net_input_bytes"])
        # INFO counts what goes to replicas in total_net_output_bytes too: taken apart here.
        self.net_out = int(info["total_net_output_bytes"]) - int(info.get("total_net_repl_output_bytes", 0))
        self.repl = int(info["master_repl_offset"])
        self.memory = int(info["used_memory"])
        stats = {k: v for k, v in info.items() if k.startswith("cmdstat_")}
        self.evalsha = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
        self.commands = sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_evalsha", "cmdstat_info"))


def per_job(after: Snapshot, before: Snapshot, jobs: int) -> dict[str, float]:
    return {
        "commands": (after.commands - before.commands) / jobs,
        "evalsha": (after.evalsha - before.evalsha) / jobs,
        "cpu_us": (after.cpu - before.cpu) * 1e6 / jobs,
        "in_bytes": (after.net_in - before.net_in) / jobs,
        "out_bytes": (after.net_out - before.net_out) / jobs,
        "repl_bytes": (after.repl - before.repl) / jobs,
        "memory": (after.memory - before.memory) / jobs,
    }


def send(jobs: Jobs, count: int) -> list[str]:
    ids: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        mine = [jobs.enqueue("bench_noop", {"work_ms": 0}).job_id for _ in range(n)]
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=work, args=(count // SENDERS,)) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ids


def wait_completed(jobs: Jobs, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(ids)
    while pending:
        states = jobs.store.fields_of(pending, ["state"])
        pending = [i for i, row in zip(pending, states, strict=True) if row["state"] != "completed"]
        assert time.monotonic() < deadline, f"{len(pending)} of {len(ids)} jobs not completed after {timeout} s"
        time.sleep(0.2)


def amqp_per_job(counter: AmqpCounter, jobs: int) -> dict[str, float]:
    figures = {f"{direction} {name}": n / jobs for (direction, name), n in counter.counts.items()}
    figures["bytes"] = sum(counter.bytes.values()) / jobs
    return figures


def test_what_a_job_costs_redis_and_rabbitmq_end_to_end(redis_pair: OwnRedis) -> None:
    primary = redis_pair
    counter = AmqpCounter()
    amqp_url = counter.url(os.environ["RABBITMQ_URL"])
    settings = get_settings().model_copy(update={"redis_url": primary.url, "rabbitmq_url": amqp_url})
    jobs = jobs_using(settings)
    env = {"REDIS_URL": primary.url, "RABBITMQ_URL": amqp_url, "JOB_RETENTION_COMPLETED_COUNT": "10000000",
           "WORKER_METRICS_PORT": "0"}  # fmt: skip
    jobs.broker.declare_queue(QUEUE, ensure=True)
    jobs.broker.channel.queue_purge(QUEUE)
    worker = WorkerProcess(
        processes=WORKER_PROCESSES, threads=8, queues=[QUEUE], env=env, modules=["tests.benchmarks.bench_actors"]
    )
    try:
        send(jobs, 200)  # warm-up: connections open, scripts loaded, the worker's first jobs
        worker.start(timeout=60)
        time.sleep(2)
        primary.client().config_resetstat()
        counter.reset()
        before = Snapshot(primary)
        started = time.monotonic()
        ids = send(jobs, JOBS)
        wait_completed(jobs, ids, timeout=120 + JOBS / 20)
        elapsed = time.monotonic() - started
        total = per_job(Snapshot(primary), before, len(ids))
        amqp_total = amqp_per_job(counter, len(ids))
        worker.stop()

        primary.client().config_resetstat()
        counter.reset()
        before = Snapshot(primary)
        ids = send(jobs, JOBS)  # the senders' share alone: no worker takes them
        senders = per_job(Snapshot(primary), before, len(ids))
        amqp_senders = amqp_per_job(counter, len(ids))
    finally:
        worker.stop()
        jobs.broker.channel.queue_purge(QUEUE)
        counter.close()

    ceiling = 1e6 / total["cpu_us"]
    rate = len(ids) / elapsed
    print(f"\nOne job end to end ({len(ids)} jobs in through Jobs.enqueue from {SENDERS} threads, {WORKER_PROCESSES}"
          f" worker processes x 8 threads, no-op; {rate:.0f} jobs/s on this shared 2-core machine)")  # fmt: skip
    print("  Redis, a job                 all     senders  worker")
    for key, label in (("commands", "commands (inner incl.)"), ("evalsha", "script calls"),
                       ("cpu_us", "primary CPU (µs)"), ("in_bytes", "bytes from clients"),
                       ("out_bytes", "bytes to clients"), ("repl_bytes", "replication bytes"),
                       ("memory", "memory kept (bytes)")):  # fmt: skip
        print(f"  {label:27} {total[key]:7.1f} {senders[key]:8.1f} {total[key] - senders[key]:8.1f}")
    print(f"  ceiling of one Redis primary at this CPU a job: {ceiling:,.0f} jobs/s")
    print("  RabbitMQ, a job (frames; client = the service's processes)")
    for key in sorted(set(amqp_total) - {"bytes"}):
        if amqp_total[key] >= 0.01:
            print(f"    {key:32} {amqp_total[key]:5.2f}   senders {amqp_senders.get(key, 0):5.2f}")
    print(f"    bytes                            {amqp_total['bytes']:7.0f}   senders {amqp_senders['bytes']:7.0f}")
    assert amqp_total["client basic.publish"] >= 1 and amqp_total["server basic.deliver"] >= 1, amqp_total
