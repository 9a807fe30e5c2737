"""The RabbitMQ dead-letter queues (`<queue>.XQ`): read them without losing anything, or take messages out."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import xq_name
from dramatiq.errors import DecodeError


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
    """Each call opens its own channel; messages not acknowledged go back, in order, when it closes."""

    def __init__(self, broker: RabbitmqBroker, wait_s: float = 2.0) -> None:
        self.broker = broker
        #: How long a page waits for a message RabbitMQ counted but has not delivered (another reader holds it).
        self.wait_s = wait_s

    @contextlib.contextmanager
    def _channel(self) -> Iterator[Any]:
        connection = pika.BlockingConnection(self.broker.parameters)
        try:
            yield connection.channel()
        finally:
            with contextlib.suppress(pika.exceptions.AMQPError):
                connection.close()

    def count(self, queue: str) -> int:
        try:
            with self._channel() as channel:
                return int(channel.queue_declare(xq_name(queue), passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code == 404:  # never declared: nothing has died there yet
                return 0
            raise

    def page(self, queue: str, offset: int, limit: int) -> tuple[list[DeadLetter], int]:
        """Messages `offset` to `offset + limit` (oldest first) and how many are ready in all. They stay in the queue.

        A consumer whose prefetch is exactly the messages wanted, which never acknowledges: RabbitMQ streams them
        without a round trip each (basic_get costs one per message, and a page deep in a large queue needs every
        message before it), and when the connection closes it puts each back in its own place, so listing neither
        loses nor reorders anything."""
        if offset + limit > MAX_DEPTH:
            raise ValueError(f"offset + limit must be at most {MAX_DEPTH}")
        try:
            with self._channel() as channel:
                total = int(channel.queue_declare(xq_name(queue), passive=True).method.message_count)
                wanted = min(total, offset + limit)
                if wanted <= offset:
                    return [], total
                channel.basic_qos(prefetch_count=wanted)
                letters: list[DeadLetter] = []
                # The timeout ends the wait when another reader took some of the counted messages meanwhile.
                for method, properties, body in channel.consume(xq_name(queue), inactivity_timeout=self.wait_s):
                    if method is None:
                        break
                    letters.append(_letter(properties, body))
                    if len(letters) >= wanted:
                        break
                return letters[offset:], total
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code != 404:
                raise
            return [], 0

    def drain(
        self, queue: str, handle: Callable[[DeadLetter], Verdict], stop: Callable[[], bool] = lambda: False
    ) -> tuple[int, int]:
        """Offer each dead message to `handle`, oldest first, until the queue is empty or `stop()` says so.

        Returns (removed, kept). `handle` must have made the message safe elsewhere (its copy published and
        confirmed) before it answers REMOVE: a crash in between leaves a duplicate, never a loss. Kept messages stay
        unacknowledged, so this loop does not see them again, and go back in place when the channel closes."""
        removed = kept = 0
        try:
            with self._channel() as channel:
                while not stop():
                    method, properties, body = channel.basic_get(xq_name(queue), auto_ack=False)
                    if method is None:
                        break
                    if handle(_letter(properties, body)) is Verdict.REMOVE:
                        channel.basic_ack(method.delivery_tag)
                        removed += 1
                    else:
                        kept += 1
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code != 404:
                raise
        return removed, kept

    def purge(self, queue: str) -> int:
        """Remove every ready message at once; returns how many. Messages a reader holds right now stay."""
        try:
            with self._channel() as channel:
                return int(channel.queue_purge(xq_name(queue)).method.message_count)
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code == 404:
                return 0
            raise
