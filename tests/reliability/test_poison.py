"""Poison messages published raw to a queue: each is dead-lettered or failed with a reason, and work goes on."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from service.bootstrap import broker
from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.reliability.harness import REPORTS, FaultReport, Fleet, wait_for
from tests.support.chaos_actors import QUEUE, tally

pytestmark = [pytest.mark.reliability]

DEAD = f"{QUEUE}.XQ"


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(1, threads=2) as running:
        yield running


@pytest.fixture
def channel() -> Iterator[Any]:
    broker.declare_queue(QUEUE, ensure=True)  # with its dead-letter twin; the worker may not have got to it yet
    connection = pika.BlockingConnection(pika.URLParameters(os.environ["RABBITMQ_URL"]))
    chan = connection.channel()
    chan.queue_purge(DEAD)
    yield chan
    connection.close()


def publish(channel: Any, body: bytes) -> None:
    channel.basic_publish("", QUEUE, body, pika.BasicProperties(delivery_mode=2))


def envelope(actor: str, kwargs: Any, **overrides: Any) -> dict[str, Any]:
    message = {
        "queue_name": QUEUE,
        "actor_name": actor,
        "args": [],
        "kwargs": kwargs,
        "options": {},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }
    message.update(overrides)
    return message


def dead_letters(channel: Any) -> int:
    return int(channel.queue_declare(DEAD, passive=True).method.message_count)


def assert_work_goes_on(jobs: Jobs, fleet: Fleet, pid_before: list[int]) -> None:
    follower = tally.send(run="poison", ms=0)
    record = jobs.wait(follower.message_id, timeout_s=20)
    assert record.state is JobState.COMPLETED
    assert fleet.workers[0].child_pids() == pid_before, "the worker process was replaced"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\x00\xffthis is not json{", id="not-json"),
        pytest.param(b'{"actor_name": "tally"}', id="json-missing-envelope-fields"),
        pytest.param(b"[1, 2, 3]", id="json-not-an-object"),
    ],
)
def test_a_body_that_is_not_a_message_is_dead_lettered_and_the_worker_goes_on(
    jobs: Jobs, fleet: Fleet, channel: Any, body: bytes
) -> None:
    pids = fleet.workers[0].child_pids()
    publish(channel, body)
    assert wait_for(lambda: dead_letters(channel) == 1, timeout=15) is not None
    assert_work_goes_on(jobs, fleet, pids)


def test_a_message_for_an_unknown_actor_is_dead_lettered(jobs: Jobs, fleet: Fleet, channel: Any) -> None:
    pids = fleet.workers[0].child_pids()
    publish(channel, json.dumps(envelope("no_such_actor", {})).encode())
    assert wait_for(lambda: dead_letters(channel) == 1, timeout=15) is not None
    assert_work_goes_on(jobs, fleet, pids)


@pytest.mark.parametrize(
    ("kwargs", "args", "reason"),
    [
        ({"run": "x", "ms": "not a number"}, [], "ms: Input should be a valid integer"),
        ({"ms": 5}, [], "run: Field required"),
        ({}, [1, 2], "positional arguments"),
        ("a string", [], "kwargs"),
    ],
    ids=["wrong-type", "missing-field", "positional", "kwargs-not-an-object"],
)
def test_a_payload_of_the_wrong_shape_fails_at_once_with_a_reason(
    jobs: Jobs, fleet: Fleet, channel: Any, kwargs: Any, args: list[Any], reason: str
) -> None:
    pids = fleet.workers[0].child_pids()
    message = envelope("tally", kwargs, args=args)
    publish(channel, json.dumps(message).encode())
    record = jobs.wait(message["message_id"], timeout_s=20)
    assert record.state is JobState.FAILED
    assert reason in (record.failedReason or ""), record.failedReason
    assert record.attempts <= 1  # failed on its first attempt, or before it (a malformed envelope)
    assert_work_goes_on(jobs, fleet, pids)


def test_a_ten_megabyte_message_fails_with_its_size_and_is_not_stored(jobs: Jobs, fleet: Fleet, channel: Any) -> None:
    pids = fleet.workers[0].child_pids()
    message = envelope("tally", {"run": "big", "ms": 0, "padding": "x" * (10 * 1024 * 1024)})
    publish(channel, json.dumps(message).encode())
    record = jobs.wait(message["message_id"], timeout_s=30)
    memory = jobs.store.client.memory_usage(f"jobs:job:{message['message_id']}", samples=0) or 0
    REPORTS.append(
        FaultReport(
            "10 MB message published raw",
            "failed with its size, payload not stored",
            sent=1,
            completed=0,
            notes=[f"record {memory} bytes in Redis"],
        )
    )
    assert record.state is JobState.FAILED
    assert "payload too large: 10485" in (record.failedReason or ""), record.failedReason
    assert record.data == {
        "omitted": f"{len(json.dumps(message['kwargs'], separators=(',', ':')))} bytes, over the 262144-byte limit"
    }
    assert record.attempts == 0
    assert wait_for(lambda: dead_letters(channel) == 1, timeout=15) is not None, fleet.logs()[-3000:]
    assert memory < 64 * 1024
    assert_work_goes_on(jobs, fleet, pids)
