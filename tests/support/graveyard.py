"""Dead letters made quickly: failed records in the store and their messages in `<queue>.XQ`, as a worker's
failures leave them (x-death header included), without running thousands of failing jobs first."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dramatiq
import pika
from dramatiq.common import q_name, xq_name
from dramatiq.errors import DecodeError

from service.bootstrap import broker, store
from service.domain.clock import iso_from_ms, now_ms
from service.domain.states import JobState
from service.rabbit.dead_letters import DeadLetter


@contextlib.contextmanager
def _channel() -> Iterator[Any]:
    """A connection of the test's own: what it leaves unacknowledged goes back, in place, when it closes."""
    connection = pika.BlockingConnection(broker.parameters)
    try:
        yield connection.channel()
    finally:
        connection.close()


@contextlib.contextmanager
def _confirmed_channel() -> Iterator[Any]:
    with _channel() as channel:
        channel.confirm_delivery()
        yield channel


def bury(
    actor_name: str, payloads: list[dict[str, Any]], *, reason: str = "PermanentError: broken", recorded: bool = True
) -> list[str]:
    """One failed job per payload, its message dead in the actor's dead-letter queue, oldest first. Returns ids.
    `recorded=False`: the store has no record of them (another service's jobs, or pruned ones)."""
    actor = broker.get_actor(actor_name)
    queue = actor.queue_name
    broker.declare_queue(queue, ensure=True)
    ids = []
    with _confirmed_channel() as channel:
        for payload in payloads:
            job_id = str(uuid.uuid4())
            created = now_ms()
            create = {
                "jobId": job_id,
                "actor": actor_name,
                "queue": q_name(queue),
                "data": json.dumps(payload),
                "priority": "normal",
                "createdMs": created,
                "createdAt": iso_from_ms(created),
            }
            if recorded:
                store.transition(job_id, JobState.QUEUED, create=create)
                store.transition(job_id, JobState.ACTIVE)
                store.transition(job_id, JobState.FAILED, fields={"failedReason": reason})
            message: dramatiq.Message[Any] = dramatiq.Message(
                queue_name=queue,
                actor_name=actor_name,
                args=(),
                kwargs=payload,
                options={"retries": 0, "last_error": reason},
                message_id=job_id,
            )
            death = {"queue": queue, "reason": "rejected", "count": 1, "time": datetime.now(UTC)}
            channel.basic_publish(
                exchange="",
                routing_key=xq_name(queue),
                body=message.encode(),
                properties=pika.BasicProperties(delivery_mode=2, headers={"x-death": [death]}),
            )
            ids.append(job_id)
    return ids


def bury_raw(queue: str, body: bytes) -> None:
    """A dead message that is not a Dramatiq message at all (another service's garbage)."""
    with _confirmed_channel() as channel:
        channel.basic_publish(exchange="", routing_key=xq_name(queue), body=body)


def read_queue(name: str) -> list[DeadLetter]:
    """Every message ready in a queue (any queue, not only a dead-letter one), oldest first, left in place."""
    letters: list[DeadLetter] = []
    with _channel() as channel:
        while True:
            method, _, body = channel.basic_get(name, auto_ack=False)
            if method is None:
                return letters
            try:
                message: dramatiq.Message[Any] | None = dramatiq.Message.decode(body)
            except DecodeError:
                message = None
            letters.append(DeadLetter(message, None, body))


def dead_ids(queue: str) -> list[str]:
    return [letter.job_id for letter in read_queue(xq_name(queue))]


def empty(queue: str) -> None:
    """The queue, its delay queue and its dead-letter queue, emptied."""
    broker.declare_queue(queue, ensure=True)
    broker.flush(queue)


def keep_only(name: str, job_ids: set[str]) -> int:
    """Remove every message of a queue except those of these jobs; returns how many were removed."""
    removed = 0
    with _channel() as channel:
        while True:
            method, _, body = channel.basic_get(name, auto_ack=False)
            if method is None:
                return removed
            if dramatiq.Message.decode(body).message_id not in job_ids:
                channel.basic_ack(method.delivery_tag)
                removed += 1
