"""Lifecycle events on RabbitMQ's `jobs.events`: a subscriber with its own durable queue sees every completed and
failed event, none missing, across a worker restart; every state change of a job is published, in order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from service import keys
from service.broker import broker, redis_client
from service.events import EXCHANGE, EventRelay, declare_exchange
from service.jobs import Jobs
from service.states import JobState
from tests.support import ops_actors, test_actors
from tests.support.workers import WorkerProcess


class Subscriber:
    """What another service would do: its own durable queue, bound to the events it cares about."""

    def __init__(self, *bindings: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(os.environ["RABBITMQ_URL"]))
        self.channel = self.connection.channel()
        declare_exchange(self.channel)
        self.queue = f"test-subscriber-{uuid.uuid4().hex[:8]}"
        self.channel.queue_declare(self.queue, durable=True)
        for key in bindings:
            self.channel.queue_bind(self.queue, EXCHANGE, routing_key=key)
        self.events: list[tuple[str, dict[str, Any], pika.BasicProperties]] = []

    def drain(self) -> list[tuple[str, dict[str, Any], pika.BasicProperties]]:
        while True:
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return self.events
            self.events.append((method.routing_key, json.loads(body), properties))

    def wait_for(self, done: Any, timeout_s: float = 20) -> list[tuple[str, dict[str, Any], pika.BasicProperties]]:
        deadline = time.monotonic() + timeout_s
        while not done(self.drain()):
            if time.monotonic() > deadline:
                raise AssertionError(f"events seen after {timeout_s}s: {[e[0] for e in self.events]}")
            time.sleep(0.1)
        return self.events

    def close(self) -> None:
        self.channel.queue_delete(self.queue)
        self.connection.close()

    @staticmethod
    def consumed(name: str) -> bool:
        """Whether someone consumes the queue (so whoever declared it has bound it already)."""
        connection = pika.BlockingConnection(pika.URLParameters(os.environ["RABBITMQ_URL"]))
        try:
            return bool(connection.channel().queue_declare(name, passive=True).method.consumer_count)
        except pika.exceptions.ChannelClosedByBroker:
            return False
        finally:
            connection.close()

    @staticmethod
    def delete_queue(name: str) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(os.environ["RABBITMQ_URL"]))
        connection.channel().queue_delete(name)
        connection.close()


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    # Only the two actors this test runs: events of other tests' jobs may still be on their way.
    subscriber = Subscriber("ops_step.completed", "ops_doomed.failed")
    yield subscriber
    subscriber.close()


def ops_worker() -> WorkerProcess:
    # A short lease: the jobs a crashed worker held are taken over within seconds, not the default 30 s.
    env = {"JOB_LEASE_MS": "3000"}
    return WorkerProcess(processes=1, threads=4, queues=["ops"], modules=["tests.support.ops_actors"], env=env)


@pytest.mark.slow
def test_a_subscriber_gets_every_completed_and_failed_event_across_worker_restarts(
    jobs: Jobs, subscriber: Subscriber
) -> None:
    assert ops_actors.ops_doomed.queue_name == "ops"
    first = ops_worker().start()
    good = [jobs.enqueue("ops_step", {"key": "events", "seconds": 0.5}).job_id for _ in range(30)]
    bad = [jobs.enqueue("ops_doomed", {"key": f"events-{i}"}).job_id for i in range(5)]

    def completed() -> int:
        return jobs.store.count(actor="ops_step", state=JobState.COMPLETED)

    deadline = time.monotonic() + 20
    while completed() < 8:
        assert time.monotonic() < deadline, f"only {completed()} jobs completed before the restart"
        time.sleep(0.05)
    first.stop()  # a clean restart, mid-stream
    assert completed() < len(good), "every job had finished: the restart was not mid-stream"
    second = ops_worker().start()
    while completed() < 16:
        assert time.monotonic() < deadline + 20, f"only {completed()} jobs completed before the crash"
        time.sleep(0.05)
    second.kill()  # and a crash: events written but not relayed yet wait in Redis
    assert completed() < len(good), "every job had finished: the crash was not mid-stream"
    with ops_worker():
        for job_id in good + bad:
            jobs.wait(job_id, timeout_s=30)
        events = subscriber.wait_for(lambda seen: len({e["jobId"] for _, e, _ in seen}) >= len(good) + len(bad))

    completed = [e for key, e, _ in events if key == "ops_step.completed"]
    failed = [e for key, e, _ in events if key == "ops_doomed.failed"]
    assert {e["jobId"] for e in completed} == set(good)
    assert {e["jobId"] for e in failed} == set(bad)
    assert {key for key, _, _ in events} == {"ops_step.completed", "ops_doomed.failed"}
    assert all("not cured yet" in e["error"] for e in failed)
    for key, event, properties in events:
        assert key == f"{event['actor']}.{event['state']}"
        assert event["queue"] == "ops" and event["at"].endswith("Z")
        assert properties.delivery_mode == 2 and properties.content_type == "application/json"
        assert properties.message_id == str(event["eventId"])
    deadline = time.monotonic() + 10  # the workers' relays drain what the last transitions wrote
    while redis_client.llen(keys.EVENTS_OUTBOX) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert redis_client.llen(keys.EVENTS_OUTBOX) == 0


def test_every_state_change_of_a_job_is_published_in_order(jobs: Jobs, worker: WorkerProcess) -> None:
    subscriber = Subscriber("flaky.*", "ops_step.*")
    try:
        job_id = test_actors.flaky.send(key="events-order", failures=1).message_id
        jobs.wait(job_id, timeout_s=20)
        mine = lambda seen: [e for _, e, _ in seen if e["jobId"] == job_id]  # noqa: E731
        events = mine(subscriber.wait_for(lambda seen: any(e["state"] == "completed" for e in mine(seen))))
        states = [e["state"] for e in events]
        # "queued" is published when the store records it; a worker quick enough to start the job first wins,
        # since states never go backwards, so it may be absent.
        assert [s for s in states if s != "queued"] == ["active", "delayed", "active", "completed"], states
        assert [e["eventId"] for e in events] == sorted(e["eventId"] for e in events)
        assert next(e for e in events if e["state"] == "delayed")["error"] == "RuntimeError: planned failure 1"
        assert [e["attempt"] for e in events if e["state"] == "active"] == [1, 2]

        # Changes made by the API or CLI (cancel, retry) are events too.
        # On "ops", which no shared worker consumes: the delayed message is dropped below, not run in a later test.
        waiting = jobs.enqueue("ops_step", {"key": "events-cancel"}, delay_ms=60_000).job_id
        jobs.cancel(waiting)
        jobs.retry(waiting)
        seen = subscriber.wait_for(lambda s: len([e for _, e, _ in s if e["jobId"] == waiting]) >= 3)
        states = [e["state"] for _, e, _ in seen if e["jobId"] == waiting]
        assert states == ["delayed", "cancelled", "queued"], states
    finally:
        subscriber.close()
        broker.flush("ops")


def test_events_wait_in_redis_while_rabbitmq_cannot_take_them() -> None:
    # An outbox of this test's own: the workers' relays drain the real one meanwhile.
    outbox, lock = "test:events:outbox", "test:events:relay"
    events = [
        {
            "eventId": i,
            "jobId": f"job-{i}",
            "actor": "add",
            "queue": "test",
            "state": "failed",
            "at": "2030-01-01T00:00:00Z",
        }
        for i in (1, 2, 3)
    ]
    redis_client.rpush(outbox, *[json.dumps(e) for e in events])
    subscriber = Subscriber("add.failed")
    try:
        down = pika.URLParameters("amqp://guest:guest@127.0.0.1:1/?connection_attempts=1")
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            EventRelay(redis_client, down, outbox=outbox, lock=lock).relay_once()
        assert redis_client.llen(outbox) == 3  # nothing lost, nothing half-removed
        assert not redis_client.exists(lock)  # and the next relay is not kept waiting

        relay = EventRelay(redis_client, pika.URLParameters(os.environ["RABBITMQ_URL"]), outbox=outbox, lock=lock)
        try:
            assert relay.relay_once() == 3
        finally:
            relay.close()
        assert redis_client.llen(outbox) == 0
        seen = subscriber.wait_for(lambda s: len(s) >= 3)
        assert [e for _, e, _ in seen] == events  # in order
    finally:
        subscriber.close()


def test_the_readme_subscriber_prints_completed_and_failed_jobs(jobs: Jobs, worker: WorkerProcess) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = readme.split("A subscriber binds its own durable queue:\n\n```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 12
    queue = f"test-readme-{uuid.uuid4().hex[:8]}"
    code = code.replace("amqp://guest:guest@localhost:5672/", os.environ["RABBITMQ_URL"])
    code = code.replace("billing.job-events", queue)
    process = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not Subscriber.consumed(queue):  # bound before the jobs are sent
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        done = test_actors.add.send(a=1, b=1).message_id
        failed = test_actors.flaky.send(key="readme", failures=99).message_id
        jobs.wait(done, timeout_s=20)
        jobs.wait(failed, timeout_s=20)
        expected = {f"add completed {done}", f"flaky failed {failed} RuntimeError: planned failure 4"}
        lines: set[str] = set()
        while not expected <= lines:  # at least once: a relay that lost its lock may publish an event again
            assert time.monotonic() < deadline, lines
            lines.add(process.stdout.readline().strip() if process.stdout else "")
        assert lines == expected
    finally:
        process.kill()
        process.wait(5)
        Subscriber.delete_queue(queue)
