"""A channel kept open between batches, that publishes a batch to one exchange and returns once RabbitMQ confirmed
every message of it: the event export's way to RabbitMQ, opened through the link (service/rabbit/link.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from service.rabbit.amqp_frames import publish_frames
from service.rabbit.link import RabbitLink, mapped


class Outgoing(NamedTuple):
    """One persistent message for the exchange."""

    routing_key: str
    body: bytes
    message_id: str
    message_type: str


class BatchChannel:
    """pika's BlockingChannel waits for each confirm in turn: a round trip per message, which made the event export
    cost more worker CPU than the jobs it reports on. The channel it wraps (`_impl`, the same object throughout pika
    1.x) takes the confirms as callbacks, so a whole batch goes out and is confirmed together.

    Opened with the link's connection parameters; every wait is bounded by the link's deadline (or `timeout_s` when
    shorter), and every failure comes out as the link's BrokerUnreachable.
    """

    def __init__(
        self,
        link: RabbitLink,
        exchange: str,
        *,
        prepare: Callable[[BlockingChannel], object] = lambda _: None,
        timeout_s: float | None = None,
    ) -> None:
        self.exchange = exchange
        self.timeout_s = min(link.deadline_s, timeout_s) if timeout_s is not None else link.deadline_s
        self.connection = link.connect()
        self._next_tag = 1
        self._outstanding: set[int] = set()
        self._refused = 0
        try:
            with mapped():
                blocking = self.connection.channel()
                prepare(blocking)  # declare the exchange, say
                self._channel: Any = blocking._impl
                ready: list[object] = []
                self._channel.confirm_delivery(self._on_confirm, callback=ready.append)
                self._wait_for(lambda: bool(ready))
        except BaseException:
            self.close()
            raise

    @property
    def is_open(self) -> bool:
        return bool(self.connection.is_open and self._channel.is_open)

    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Raises BrokerUnreachable if RabbitMQ refused any message or did not confirm them all in time: publish them
        again (on a new channel)."""
        with mapped():
            self._publish(messages)

    def _publish(self, messages: Sequence[Outgoing]) -> None:
        self._refused = 0
        connection = self._channel.connection
        channel, frame_max, now = self._channel.channel_number, connection.params.frame_max, int(time.time())
        # Written to the socket in one go, with frames built here (service/rabbit/amqp_frames.py): through pika, each
        # message cost a system call per frame and several times the CPU.
        frames = b"".join(
            publish_frames(
                channel,
                self.exchange,
                m.routing_key,
                m.body,
                message_id=m.message_id,
                message_type=m.message_type,
                timestamp=now,
                frame_max=frame_max,
            )
            for m in messages
        )
        if not self.is_open:
            raise pika.exceptions.ChannelWrongStateError("channel closed before the messages were published")
        connection._adapter_emit_data(frames)
        connection.bytes_sent += len(frames)  # read by pika's heartbeat checker
        self._outstanding.update(range(self._next_tag, self._next_tag + len(messages)))
        self._next_tag += len(messages)
        self._wait_for(lambda: not self._outstanding)
        if self._refused:
            raise pika.exceptions.NackError([])

    def idle(self, seconds: float) -> None:
        """Serve the connection (heartbeats) for a moment instead of sleeping. Raises BrokerUnreachable."""
        with mapped():
            self.connection.sleep(seconds)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        settled = (
            {t for t in self._outstanding if t <= method.delivery_tag} if method.multiple else {method.delivery_tag}
        )
        self._outstanding -= settled
        if isinstance(method, pika.spec.Basic.Nack):
            self._refused += len(settled)

    def _wait_for(self, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not done():
            if not self.is_open:
                raise pika.exceptions.ChannelWrongStateError("channel closed before RabbitMQ confirmed the messages")
            if time.monotonic() > deadline:
                raise pika.exceptions.AMQPConnectionError(f"no confirms from RabbitMQ within {self.timeout_s:g}s")
            self.connection.process_data_events(time_limit=0.05)

    def close(self) -> None:
        if self.connection.is_open:
            with contextlib.suppress(Exception):  # being thrown away
                self.connection.close()
