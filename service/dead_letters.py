"""The RabbitMQ dead-letter queues (`<queue>.XQ`): read them without losing anything, or take messages out."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
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

    def __init__(self, broker: RabbitmqBroker) -> None:
        self.broker = broker

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

    def peek(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """Up to `limit` dead messages, oldest first. They stay in the queue."""
        letters: list[DeadLetter] = []
        try:
            with self._channel() as channel:
                while len(letters) < limit:
                    method, properties, body = channel.basic_get(xq_name(queue), auto_ack=False)
                    if method is None:
                        break
                    letters.append(_letter(properties, body))
                # Nothing is acknowledged: closing the channel puts every message back where it was.
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code != 404:
                raise
        return letters

    def drain(self, queue: str, handle: Callable[[DeadLetter], bool], limit: int = 10_000) -> tuple[int, int]:
        """Offer each dead message to `handle`; those it returns True for are removed, the rest stay.

        Returns (removed, kept). `handle` must have made the message safe elsewhere (republished it) before
        returning True: a crash in between leaves a duplicate, never a loss.
        """
        removed = kept = 0
        try:
            with self._channel() as channel:
                while removed + kept < limit:
                    method, properties, body = channel.basic_get(xq_name(queue), auto_ack=False)
                    if method is None:
                        break
                    if handle(_letter(properties, body)):
                        channel.basic_ack(method.delivery_tag)
                        removed += 1
                    else:
                        kept += 1  # stays unacknowledged, so this loop does not see it again
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code != 404:
                raise
        return removed, kept
