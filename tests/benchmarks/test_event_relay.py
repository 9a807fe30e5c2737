"""The lifecycle-event path: events per second into the Redis stream through real transitions (queued, active,
completed, written by threads as workers write them), read back by a consumer group, and with the RabbitMQ export on,
end to end into a bound queue. No event may be missing or out of order per job.

Printed: each rate. Asserted: the relay drains a full stream at EXPORT_TARGET events/s or more, and keeps up with
writers adding to the stream (end to end at least KEEP_UP of the rate they write at).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pika

from service.bootstrap import broker, redis_client, store
from service.domain.states import JobState
from service.ops.event_export import EventExport, declare_exchange
from service.rabbit.link import shared_link
from service.store import keys

JOBS = int(os.environ.get("BENCH_EVENT_JOBS", "5000"))
THREADS = 8
#: Events per second the relay must drain a full stream at, end to end into a queue: measured 2,300-6,000 on the
#: shared 2-core machine (load average 5-9, RabbitMQ and Redis on it too); the margin is for a busier one.
EXPORT_TARGET = float(os.environ.get("BENCH_EXPORT_TARGET", "1500"))
#: While writers add events, the export's end-to-end rate over their rate.
KEEP_UP = 0.8


def one_job(job_id: str) -> None:
    """queued, active, completed: three transitions, three events, as the API and a worker write them."""
    create = {"jobId": job_id, "actor": "bench_noop", "queue": "bench", "createdMs": int(time.time() * 1000)}
    store.transition(job_id, JobState.QUEUED, create=create)
    started = store.transition(job_id, JobState.ACTIVE, lease=("bench-holder", 30_000))
    store.transition(job_id, JobState.COMPLETED, token=started.token)


def write_jobs(prefix: str) -> tuple[list[str], float]:
    """(job ids, seconds) to run JOBS jobs through the store from THREADS threads (the batcher joins their calls)."""
    ids = [f"{prefix}-{i:06d}-{uuid.uuid4().hex[:6]}" for i in range(JOBS)]
    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one_job, ids))
    return ids, time.perf_counter() - started


def read_back(group: str) -> tuple[int, float]:
    """(events, seconds) for a consumer group to read and acknowledge the whole stream, as a subscriber does."""
    redis_client.xgroup_create(keys.EVENTS, group, id="0")
    started, read = time.perf_counter(), 0
    while reply := redis_client.xreadgroup(group, "bench-1", {keys.EVENTS: ">"}, count=1000):
        entries = reply[0][1]
        redis_client.xack(keys.EVENTS, group, *[entry_id for entry_id, _ in entries])
        read += len(entries)
    return read, time.perf_counter() - started


class Counter:
    """A consumer of the bound queue, in its own thread, keeping every event it receives."""

    def __init__(self, exchange: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(os.environ["RABBITMQ_URL"]))
        channel = self.connection.channel()
        declare_exchange(channel, exchange)
        self.queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(self.queue, exchange, routing_key="#")
        channel.basic_qos(prefetch_count=2000)
        self.channel = channel
        self.events: list[dict[str, Any]] = []
        self.arrivals: list[float] = []  #: when each distinct event first arrived (perf_counter)

    def take(self, wanted: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        distinct: set[str] = set()
        for method, _, body in self.channel.consume(self.queue, auto_ack=True, inactivity_timeout=0.5):
            if method is not None:
                self.events.append(json.loads(body))
                if self.events[-1]["eventId"] not in distinct:
                    distinct.add(self.events[-1]["eventId"])
                    self.arrivals.append(time.perf_counter())
            if len(distinct) >= wanted or time.monotonic() > deadline:
                break
        self.channel.cancel()
        self.connection.close()


def test_the_event_path_into_the_stream_through_a_group_and_out_to_rabbitmq() -> None:
    ids, write_s = write_jobs("stream")
    events = redis_client.xlen(keys.EVENTS)
    assert events == 3 * JOBS  # every transition wrote its event
    read, read_s = read_back("bench-subscriber")
    assert read == events

    # The export on: its relay first drains the stream as it is, then keeps up while writers add to it.
    exchange = f"bench.events.{uuid.uuid4().hex[:6]}"
    counter = Counter(exchange)
    taker = threading.Thread(target=counter.take, args=(6 * JOBS, 180))
    taker.start()
    export = EventExport(redis_client, shared_link(broker), exchange)
    started = time.perf_counter()
    export.start()
    try:
        while len(counter.arrivals) < 3 * JOBS and taker.is_alive():
            time.sleep(0.01)
        drain_s = counter.arrivals[3 * JOBS - 1] - started
        writing = time.perf_counter()
        later_ids, later_write_s = write_jobs("export")
        taker.join(180)
        keep_up_s = counter.arrivals[-1] - writing
    finally:
        export.stop()
    exported_ids = ids + later_ids

    # None missing, none out of order per job (at least once: the first arrival of each event counts).
    first: dict[str, dict[str, Any]] = {}
    for event in counter.events:
        first.setdefault(event["eventId"], event)
    per_job: dict[str, list[str]] = defaultdict(list)
    for event in first.values():
        per_job[event["jobId"]].append(event["state"])
    assert set(per_job) == set(exported_ids), f"{len(set(exported_ids) - set(per_job))} jobs missing"
    assert all(states == ["queued", "active", "completed"] for states in per_job.values())
    stream_ids = [str(entry_id) for entry_id, _ in redis_client.xrange(keys.EVENTS)]
    assert list(first) == stream_ids  # the stream's order, event for event

    into, back, drain = events / write_s, read / read_s, events / drain_s
    written, kept_up = 3 * JOBS / later_write_s, 3 * JOBS / keep_up_s
    print(f"\nevent path, {JOBS} jobs x 3 transitions from {THREADS} threads")
    print(f"  into the stream (real transitions):    {into:8.0f} events/s")
    print(f"  read back by a consumer group:         {back:8.0f} events/s (XREADGROUP 1000 + XACK)")
    print(f"  export, a full stream to a queue:      {drain:8.0f} events/s (end to end, confirmed and acknowledged)")
    print(
        f"  export while writers add {written:6.0f}/s:    {kept_up:8.0f} events/s end to end ({kept_up / written:.2f})"
    )
    print(f"  duplicates received: {len(counter.events) - len(first)}")
    assert drain >= EXPORT_TARGET, f"the export drained {drain:.0f} events/s, target >= {EXPORT_TARGET:.0f}"
    assert kept_up >= KEEP_UP * written, (
        f"the export kept up at {kept_up / written:.2f} of the writers, target {KEEP_UP}"
    )
