"""The RabbitMQ dead-letter queues (`<queue>.XQ`): read them without losing anything, or take messages out, through
the link (service/rabbit/link.py), so every call answers within its deadline."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

import dramatiq
import pika
from dramatiq.common import xq_name
from dramatiq.errors import DecodeError
from pika.adapters.blocking_connection import BlockingChannel

from service.rabbit.link import RabbitLink, if_missing


@dataclass(frozen=True)
class DeadLetter:
    """One dead message. `message` is None when the body is not a Dramatiq message at all."""

    message: dramatiq.Message[Any] | None
    dead_at_ms: int | None
    raw: bytes = field(repr=False, default=b"")

    @property
    def job_id(self) -> str:
        return self.message.message_id if self.message else "(not a Dramatiq message)"

    @property
    def actor(self) -> str:
        return self.message.actor_name if self.message else ""


class Verdict(Enum):
    """What `drain` does with a message once its handler has looked at it."""

    REMOVE = "remove"  #: acknowledged: gone from the dead-letter queue
    KEEP = "keep"  #: left unacknowledged, so it goes back in its place when the channel closes


#: AMQP's prefetch count is a 16-bit number: a page can reach this deep into a dead-letter queue, no deeper.
MAX_DEPTH = 65_535
#: A page is read in calls of at most this many messages, each under the link's deadline.
PAGE_CALL = 1000

#: What a consumer yields: (method, properties, body), or Nones when nothing came within its inactivity timeout.
Deliveries = Iterator[tuple[Any, Any, Any]]


def _dead_at(properties: pika.BasicProperties) -> int | None:
    # RabbitMQ stamps each dead-lettering in the x-death header, newest first.
    deaths = (properties.headers or {}).get("x-death") or []
    when: Any = deaths[0].get("time") if deaths else None
    return int(when.timestamp() * 1000) if isinstance(when, datetime) else None


def _letter(properties: pika.BasicProperties, body: bytes) -> DeadLetter:
    try:
        message: dramatiq.Message[Any] | None = dramatiq.Message.decode(body)
    except DecodeError:
        message = None
    return DeadLetter(message, _dead_at(properties), body)


class DeadLetters:
    """Reads go through a session of the link (a channel of its own, closed at the end of the call): messages not
    acknowledged go back, in order, when it closes. Each step waits at most the link's deadline."""

    def __init__(self, link: RabbitLink, wait_s: float = 2.0) -> None:
        self.link = link
        #: How long a page waits for a message RabbitMQ counted but has not delivered (another reader holds it);
        #: shorter than the link's deadline, so that a wait in vain ends a page rather than failing it.
        self.wait_s = min(wait_s, link.deadline_s / 2)

    def count(self, queue: str) -> int:
        """0 when the queue was never declared: nothing has died there yet."""
        return self.link.run(lambda link: link.message_count(xq_name(queue)))

    def page(self, queue: str, offset: int, limit: int) -> tuple[list[DeadLetter], int]:
        """Messages `offset` to `offset + limit` (oldest first) and how many are ready in all. They stay in the queue.

        A consumer whose prefetch is exactly the messages wanted, which never acknowledges: RabbitMQ streams them
        without a round trip each (basic_get costs one per message, and a page deep in a large queue needs every
        message before it), and when the connection closes it puts each back in its own place, so listing neither
        loses nor reorders anything."""
        if offset + limit > MAX_DEPTH:
            raise ValueError(f"offset + limit must be at most {MAX_DEPTH}")
        name = xq_name(queue)
        with self.link.session() as session:
            total = session.run(lambda channel: if_missing(-1, lambda: _ready(channel, name)))
            if total < 0:
                return [], 0
            wanted = min(total, offset + limit)
            if wanted <= offset:
                return [], total

            def consume(channel: BlockingChannel) -> Deliveries:
                channel.basic_qos(prefetch_count=wanted)
                # The timeout ends the wait when another reader took some of the counted messages meanwhile.
                deliveries: Deliveries = channel.consume(name, inactivity_timeout=self.wait_s)
                return deliveries

            deliveries = session.run(consume)
            letters: list[DeadLetter] = []
            while len(letters) < wanted:
                more, ended = session.run(
                    functools.partial(self._take, deliveries, min(wanted - len(letters), PAGE_CALL))
                )
                letters += more
                if ended:
                    break
            return letters[offset:], total

    def _take(self, deliveries: Deliveries, count: int, _: BlockingChannel) -> tuple[list[DeadLetter], bool]:
        """Up to `count` messages, and whether the stream ended (nothing came within wait_s). Returns early, after
        half of wait_s, with what came: with the wait for one more message, a call stays within the deadline."""
        letters: list[DeadLetter] = []
        give_back_at = time.monotonic() + self.wait_s / 2
        for method, properties, body in deliveries:
            if method is None:
                return letters, True
            letters.append(_letter(properties, body))
            if len(letters) >= count or time.monotonic() > give_back_at:
                break
        return letters, False

    def drain(
        self, queue: str, handle: Callable[[DeadLetter], Verdict], stop: Callable[[], bool] = lambda: False
    ) -> tuple[int, int]:
        """Offer each dead message to `handle`, oldest first, until the queue is empty or `stop()` says so.

        Returns (removed, kept). `handle` must have made the message safe elsewhere (its copy published and
        confirmed) before it answers REMOVE: a crash in between leaves a duplicate, never a loss. Kept messages stay
        unacknowledged, so this loop does not see them again, and go back in place when the session closes."""
        removed = kept = 0
        name = xq_name(queue)

        def get(channel: BlockingChannel) -> tuple[Any, Any, Any]:
            return if_missing((None, None, None), lambda: channel.basic_get(name, auto_ack=False))

        with self.link.session() as session:
            while not stop():
                method, properties, body = session.run(get)
                if method is None:
                    break
                if handle(_letter(properties, body)) is Verdict.REMOVE:
                    session.run(functools.partial(_ack, method.delivery_tag))
                    removed += 1
                else:
                    kept += 1
        return removed, kept

    def purge(self, queue: str) -> int:
        """Remove every ready message at once; returns how many. Messages a reader holds right now stay."""
        return self.link.run(lambda link: link.purge_queue(xq_name(queue)))


def _ack(tag: int, channel: BlockingChannel) -> None:
    channel.basic_ack(tag)


def _ready(channel: BlockingChannel, queue: str) -> int:
    return int(channel.queue_declare(queue, passive=True).method.message_count)
