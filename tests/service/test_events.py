"""Lifecycle events: every state change is an entry of the Redis stream `jobs:events`, written with the change; another
service reads it with a consumer group across its own restart; the RabbitMQ export, off unless EVENTS_EXCHANGE is
set, publishes every event in the stream's order, at least once, across a connection drop and a relay restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from service.bootstrap import broker, redis_client, store
from service.domain.states import JobState
from service.ops.event_export import CONSUMER, EventExport, declare_exchange
from service.ops.event_log import EventLog
from service.ops.jobs import Jobs
from service.rabbit.link import RabbitLink, shared_link
from service.store import keys
from service.store.job_store import JobStore
from tests.reliability.harness import through
from tests.support import ops_actors, test_actors
from tests.support.proxy import FaultProxy
from tests.support.schedulers import SchedulerProcess
from tests.support.workers import WorkerProcess

log = EventLog(redis_client)


def wait_until(done: Callable[[], Any], timeout_s: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := done()):
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        time.sleep(0.05)
    return result


def link_to(url: str) -> RabbitLink:
    """A link of its own to the RabbitMQ at `url` (a fault proxy's), as the scheduler's export has one."""
    return RabbitLink(RabbitmqBroker(url=url, middleware=[]))


class Bound:
    """A queue of this test's own, bound to everything the export publishes to `exchange`."""

    def __init__(self, exchange: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(os.environ["RABBITMQ_URL"]))
        self.channel = self.connection.channel()
        declare_exchange(self.channel, exchange)
        self.queue = f"test-export-{uuid.uuid4().hex[:8]}"
        self.channel.queue_declare(self.queue, exclusive=True)
        self.channel.queue_bind(self.queue, exchange, routing_key="#")
        self.messages: list[tuple[str, dict[str, Any], pika.BasicProperties]] = []

    def drain(self) -> list[tuple[str, dict[str, Any], pika.BasicProperties]]:
        while True:
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return self.messages
            self.messages.append((method.routing_key, json.loads(body), properties))

    def first_seen(self) -> list[str]:
        """The event ids in the order they first arrived (at least once: a batch may come again)."""
        seen: dict[str, None] = {}
        for _, event, _ in self.drain():
            seen.setdefault(event["eventId"], None)
        return list(seen)

    def close(self) -> None:
        self.connection.close()


def run_job_through_the_store(job_id: str, st: JobStore) -> None:
    """queued, active, completed: real transitions, as the API and a worker write them."""
    create = {"jobId": job_id, "actor": "add", "queue": "test", "createdMs": int(time.time() * 1000), "data": "{}"}
    st.transition(job_id, JobState.QUEUED, create=create)
    started = st.transition(job_id, JobState.ACTIVE, lease=("test-holder", 30_000))
    st.transition(job_id, JobState.COMPLETED, token=started.token)


def test_every_state_change_of_a_job_is_in_the_stream_in_order(jobs: Jobs, worker: WorkerProcess) -> None:
    job_id = test_actors.flaky.send(key="events-order", failures=1).message_id
    jobs.wait(job_id, timeout_s=20)
    created_ms = int(time.time() * 1000) - 30_000
    events = log.of_job(job_id, created_ms)
    states = [e.state for e in events]
    # "queued" is an event when the store records it; a worker quick enough to start the job first wins, since
    # states never go backwards, so it may be absent.
    assert [s for s in states if s != "queued"] == ["active", "delayed", "active", "completed"], states
    assert [e.event_id for e in events] == sorted(events_ids := [e.event_id for e in events], key=stream_order)
    assert len(set(events_ids)) == len(events_ids)
    assert next(e for e in events if e.state == "delayed").error == "RuntimeError: planned failure 1"
    assert [e.attempt for e in events if e.state == "active"] == [1, 2]
    # Flat and small: only the fields a change has.
    raw = redis_client.xrange(keys.EVENTS, events[-1].event_id, events[-1].event_id)[0][1]
    assert set(raw) == {"jobId", "actor", "queue", "state", "at", "run", "retry", "seq"}, raw
    assert raw["actor"] == "flaky" and raw["queue"] == "test" and raw["at"].endswith("Z")

    # Changes made by the API or CLI (cancel, retry) are events too. On "ops", which no shared worker consumes.
    assert ops_actors.ops_step.queue_name == "ops"
    waiting = jobs.enqueue("ops_step", {"key": "events-cancel"}, delay_ms=60_000).job_id
    jobs.cancel(waiting)
    jobs.retry(waiting)
    assert [e.state for e in log.of_job(waiting, created_ms)] == ["delayed", "cancelled", "queued"]
    assert log.recent(3)[-1].job_id == waiting
    broker.flush("ops")


def stream_order(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq)


def test_the_stream_keeps_about_its_cap_and_metrics_count_what_was_trimmed() -> None:
    small = JobStore(redis_client, events_maxlen=1000)
    assert "${EVENTS_STREAM_MAXLEN}" not in small._transition.script  # baked in: no read of the cap per call
    jobs = [(uuid.uuid4().hex, JobState.QUEUED, {"actor": "add", "queue": "test", "createdMs": i}) for i in range(3000)]
    small.record_enqueued([(job_id, state, {**create, "jobId": job_id}) for job_id, state, create in jobs])
    figures = log.figures()
    assert figures.added == 3000
    assert 1000 <= figures.length < 1200, figures  # MAXLEN ~ trims whole nodes of the stream
    assert figures.trimmed == 3000 - figures.length
    assert log.recent(1)[0].job_id == jobs[-1][0]  # the newest stay


def test_a_groups_lag_is_counted_after_the_cap_has_trimmed_the_stream() -> None:
    small = JobStore(redis_client, events_maxlen=100)

    def add(n: int) -> None:
        jobs = [(uuid.uuid4().hex, JobState.QUEUED, {"actor": "add", "queue": "test", "createdMs": i})
                for i in range(n)]  # fmt: skip
        small.record_enqueued([(job_id, state, {**create, "jobId": job_id}) for job_id, state, create in jobs])

    add(500)
    redis_client.xgroup_create(keys.EVENTS, "behind", id="$")
    redis_client.xgroup_create(keys.EVENTS, "long-gone", id="0-1")  # its last event was trimmed long ago
    add(30)
    groups = {g["name"]: g for g in redis_client.xinfo_groups(keys.EVENTS)}
    # The situation: the stream was trimmed, and Redis cannot tell these groups' lag.
    assert log.figures().trimmed > 0
    assert groups["behind"]["lag"] is None
    lags = {g.name: g.lag for g in log.figures().groups}
    assert lags["behind"] == 30  # counted with the events' seq
    assert lags["long-gone"] == log.figures().length  # at least every event still there (Redis says so too)


def readme_subscriber() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    marker = "It reads from the moment its group was made (`$`; `0` for everything the stream holds):\n\n```python\n"
    code = readme.split(marker, 1)[1].split("```", 1)[0]
    assert len([line for line in code.splitlines() if line.strip()]) <= 16
    return code.replace("redis://localhost:6379/0", os.environ["REDIS_URL"])


class SubscriberProcess:
    """The README's subscriber, run as written, its lines collected."""

    def __init__(self, code: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(5)


def test_the_readme_subscriber_gets_every_event_across_its_own_restart(jobs: Jobs, worker: WorkerProcess) -> None:
    code = readme_subscriber()
    first = SubscriberProcess(code)
    try:
        wait_until(lambda: redis_client.exists(keys.EVENTS) and redis_client.xinfo_groups(keys.EVENTS), what="group")
        sent = [test_actors.slow.send(key="readme-sub", seconds=0.1, steps=1).message_id for _ in range(60)]
        wait_until(lambda: sum(" completed " in line for line in first.lines) >= 5, what="first events")
        first.kill()  # mid-stream: jobs still finish meanwhile, their events wait in the stream
    finally:
        first.kill() if first.process.poll() is None else None
    before = list(first.lines)
    assert sum(" completed " in line for line in before) < len(sent), "every job had finished: not mid-stream"
    for job_id in sent:
        jobs.wait(job_id, timeout_s=30)
    groups = redis_client.xinfo_groups(keys.EVENTS)
    assert groups[0]["lag"] > 0 or groups[0]["pending"] > 0  # events were waiting for the subscriber

    second = SubscriberProcess(code)
    try:
        wanted = {(job_id, state) for job_id in sent for state in ("active", "completed")}

        def seen() -> set[tuple[str, str]]:
            pairs = set()
            for line in before + second.lines:
                if len(line.split(" ")) < 4:
                    continue  # the last line of the killed subscriber, cut mid-write (it was not acknowledged)
                _, actor, state, job_id, *_ = line.split(" ")
                assert actor == "slow"
                pairs.add((job_id, state))
            return pairs

        wait_until(lambda: wanted <= seen(), what=f"events still missing: {sorted(wanted - seen())[:5]}")
        assert redis_client.xinfo_groups(keys.EVENTS)[0]["pending"] == 0 or wait_until(
            lambda: redis_client.xinfo_groups(keys.EVENTS)[0]["pending"] == 0, what="all acknowledged"
        )
    finally:
        second.kill()


# -- the RabbitMQ export -----------------------------------------------------------------------------------------


@pytest.fixture
def exchange() -> Iterator[str]:
    name = f"test.events.{uuid.uuid4().hex[:8]}"
    yield name
    connection = pika.BlockingConnection(pika.URLParameters(os.environ["RABBITMQ_URL"]))
    connection.channel().exchange_delete(name)
    connection.close()


def test_the_export_publishes_every_event_in_order_across_a_connection_drop_and_a_relay_restart(
    exchange: str,
) -> None:
    bound = Bound(exchange)
    try:
        for i in range(100):
            run_job_through_the_store(f"before-{i:03d}", store)
        with FaultProxy(5672, name="rabbit") as rabbit:
            url = through(os.environ["RABBITMQ_URL"], rabbit, connection_attempts="1", retry_delay="0")
            first = EventExport(redis_client, link_to(url), exchange, batch=50, lease_ms=2000)
            first.start()
            wait_until(lambda: len(bound.first_seen()) >= 60, what="the first events exported")
            assert rabbit.cut() >= 1  # the relay's connection drops mid-stream
            for i in range(100):
                run_job_through_the_store(f"during-{i:03d}", store)
            wait_until(lambda: len(bound.first_seen()) >= 450, what="the export to recover")
            # The relay dies between reading a batch and publishing it: that batch stays pending in its group.
            assert first.loop.stop(10)  # not first.stop(): that would give the lease up
            first.close()
        for i in range(100):
            run_job_through_the_store(f"after-{i:03d}", store)
        stranded = redis_client.xreadgroup(first.group, CONSUMER, {keys.EVENTS: ">"}, count=40)[0][1]
        assert len(stranded) == 40
        # Another relay (a new token: the dead one's lease must lapse first) takes over and publishes it first.
        second = EventExport(redis_client, shared_link(broker), exchange, lease_ms=2000)
        second.start()
        try:
            everything = [str(entry_id) for entry_id, _ in redis_client.xrange(keys.EVENTS)]
            assert len(everything) == 900
            wait_until(lambda: len(bound.first_seen()) == 900, timeout_s=30, what="every event exported")
        finally:
            second.stop()
        assert bound.first_seen() == everything  # none missing, in the stream's order
        assert redis_client.xinfo_groups(keys.EVENTS)[0]["pending"] == 0
        for key, event, properties in bound.drain():
            assert key == f"{event['actor']}.{event['state']}"
            assert properties.delivery_mode == 2 and properties.message_id == event["eventId"]
    finally:
        bound.close()


def test_a_scheduler_exports_only_when_events_exchange_is_set(exchange: str, jobs: Jobs, worker: WorkerProcess) -> None:
    bound = Bound(exchange)
    try:
        with SchedulerProcess() as scheduler:
            scheduler.wait_for(lambda out: "scheduler running" in out or "idling until stopped" in out)
            job_id = test_actors.add.send(a=1, b=2).message_id
            jobs.wait(job_id, timeout_s=20)
            assert {e.state for e in log.of_job(job_id, 0)} >= {"active", "completed"}  # the events are there
            time.sleep(1.5)  # longer than an export round would take
            assert bound.drain() == []  # and nothing left Redis
            assert redis_client.xinfo_groups(keys.EVENTS) == []  # no export group was even made

        with SchedulerProcess(env={"EVENTS_EXCHANGE": exchange}) as scheduler:
            scheduler.wait_for(lambda out: f"exporting lifecycle events to the RabbitMQ exchange {exchange}" in out)
            other = test_actors.add.send(a=2, b=3).message_id
            jobs.wait(other, timeout_s=20)
            wait_until(
                lambda: {(e["jobId"], e["state"]) for _, e, _ in bound.drain()} >= {(other, "completed")},
                what="the scheduler's export",
            )
        # Its group started at the stream's first event: what happened before the export was on went out too.
        assert (job_id, "completed") in {(e["jobId"], e["state"]) for _, e, _ in bound.drain()}
    finally:
        bound.close()
