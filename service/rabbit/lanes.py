"""A consumer of a queue's priority lanes (quorum queues have no priorities: service/rabbit/queue_types.py), so that
high jobs overtake a backlog of normal ones, and normal ones a backlog of low ones.

One channel, one consumer per lane, each with the worker's prefetch. Deliveries wait here until Dramatiq's consumer
thread asks for the next message, which is the oldest of the highest lane that may go: a lane's message goes only
while every higher lane has run dry. While RabbitMQ holds more of a lane, it refills that lane's prefetch as the worker
settles its messages (once a quorum commit went through), so a lane with a backlog has a full prefetch in hand
(delivered, not yet settled), or had one a moment ago; for a moment after that its own count in RabbitMQ decides, and
a lane that has not been full for REFILL_GRACE_S is dry. Until then the lower lanes' deliveries are held back, so the
threads take the higher lane's messages first, and only the few lower ones handed out before stay ahead of them
(Dramatiq's work queue is first in, first out). The classic priority queue does the same: RabbitMQ orders what it
has not delivered yet.

Acknowledgements are batched as BatchingConsumer does: delivery tags count up across the channel's consumers.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from functools import partial
from typing import Any

import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import _RabbitmqMessage
from dramatiq.common import q_name
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.message import Message, get_encoder

from service.rabbit.acks import BatchingConsumer

logger = logging.getLogger(__name__)

#: While deliveries are held back, the channel is read at least this often, so they go soon after a higher lane runs
#: dry (a settle is a callback on the connection, which does not end the wait for a delivery).
HELD_POLL_S = 0.05
#: A lane short of a full prefetch for this long is dry: far longer than RabbitMQ takes to refill it after a settle (a
#: quorum queue commits the settle on a majority of its nodes first). Sooner, RabbitMQ is asked how many it holds.
REFILL_GRACE_S = 1.0

_CHANNEL_ERRORS = (AssertionError, pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError)


class LaneConsumer(BatchingConsumer):
    """Dramatiq's consumer interface over several queues; `lanes` come highest priority first."""

    def __init__(self, broker: Any, queue_name: str, lanes: list[str], prefetch: int, timeout: int) -> None:
        # Not Dramatiq's consumer set-up, which consumes one queue through pika's generator.
        self.broker = broker
        self.queue_name = queue_name
        self.logger = logger
        self.known_tags: set[int] = set()
        self._start_batching()
        self.lanes = lanes
        self.prefetch = prefetch
        self.timeout_s = timeout / 1000
        self._waiting: list[deque[tuple[Any, bytes]]] = [deque() for _ in lanes]  #: delivered, not handed out
        self._in_hand = [0] * len(lanes)  #: delivered and not settled, per lane
        self._lane_of: dict[int, int] = {}  #: delivery tag -> lane, until settled
        self._full_until = [0.0] * len(lanes)  #: when each lane last stopped having a full prefetch in hand
        self._ready: dict[int, tuple[float, int]] = {}  #: lane -> (when asked, messages RabbitMQ held ready then)
        self._cancelled: str | None = None
        try:
            self.connection = pika.BlockingConnection(parameters=broker.parameters)
        except _CHANNEL_ERRORS as e:
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]
        try:
            self.channel = self.connection.channel()
            self.channel.basic_qos(prefetch_count=prefetch)  # per consumer: each lane has a prefetch of its own
            self.channel.add_on_cancel_callback(self._cancelled_by_broker)
            for rank, lane in enumerate(lanes):
                self.channel.basic_consume(lane, partial(self._delivered, rank))
        except _CHANNEL_ERRORS as e:
            if self.connection.is_open:
                self.connection.close()
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]

    def __next__(self) -> Any:
        try:
            ready = self._next_ready()
            if ready is None:
                wait = min(self.timeout_s, HELD_POLL_S) if any(self._waiting) else self.timeout_s
                self.connection.process_data_events(time_limit=wait)
                ready = self._next_ready()
        except _CHANNEL_ERRORS as e:
            if getattr(e, "reply_code", None) == 404:  # a lane was deleted: declare the queue again at the restart
                self.broker.queues_pending.add(q_name(self.queue_name))
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]
        if self._cancelled is not None:
            # RabbitMQ ended a lane's consumer (its queue deleted, or a node leaving): Dramatiq's consumer thread
            # closes this one and opens a new one, which consumes every lane again.
            raise ConnectionClosed(self._cancelled)  # type: ignore[no-untyped-call]
        if ready is None:
            return None
        method, body = ready
        try:
            message = Message.decode(body)
        except DecodeError:
            logger.exception("Failed to decode message using encoder %r.", get_encoder())
            self._nack(method.delivery_tag)
            return None
        self.known_tags.add(method.delivery_tag)
        delivered = _RabbitmqMessage(method.redelivered, method.delivery_tag, message)  # type: ignore[no-untyped-call]
        return self._mark(delivered)

    def _next_ready(self) -> tuple[Any, bytes] | None:
        for rank, waiting in enumerate(self._waiting):
            if waiting and all(self._ran_dry(higher) for higher in range(rank)):
                return waiting.popleft()
        return None

    def _ran_dry(self, rank: int) -> bool:
        """Whether RabbitMQ has no more of the lane to give."""
        if self._in_hand[rank] >= self.prefetch:
            return False
        now = time.monotonic()
        if now - self._full_until[rank] >= REFILL_GRACE_S:
            return True
        asked_at, ready = self._ready.get(rank, (0.0, 0))
        if now - asked_at >= HELD_POLL_S:  # at most one question per poll, however often the thread asks
            declared = self.channel.queue_declare(self.lanes[rank], passive=True)
            ready = int(declared.method.message_count)
            self._ready[rank] = (now, ready)
        return ready == 0

    # On the connection's thread (in process_data_events).

    def _delivered(self, rank: int, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self._waiting[rank].append((method, body))
        self._in_hand[rank] += 1
        self._lane_of[method.delivery_tag] = rank

    def _settle(self, tag: int) -> None:
        rank = self._lane_of.pop(tag, None)
        if rank is not None:
            if self._in_hand[rank] >= self.prefetch:
                self._full_until[rank] = time.monotonic()
            self._in_hand[rank] -= 1
        super()._settle(tag)

    def _cancelled_by_broker(self, method: Any) -> None:
        self._cancelled = f"RabbitMQ cancelled the consumer of {self.queue_name!r} ({method.method.consumer_tag})"
