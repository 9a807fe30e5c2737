"""Hand a delivered message back to RabbitMQ without running it and without acknowledging it.

Dramatiq has no "requeue" for a message a worker thread already holds: whatever happens in the hooks, the thread
acknowledges it (or dead-letters it) afterwards. Parking takes the delivery tag away from the consumer first, so
that acknowledgement is a no-op, and skips the message; RabbitMQ keeps it unacknowledged and delivers it again
when the consumer's channel closes (pause, stop) or when `release` nacks it with requeue.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from functools import partial
from typing import Any

from dramatiq.middleware import SkipMessage

logger = logging.getLogger(__name__)

_parking = threading.local()


@dataclass(frozen=True)
class Ticket:
    queue: str
    consumer: Any  #: the Dramatiq consumer whose channel delivered the message
    tag: int


class ParkingLot:
    """The messages this process parked and has not handed back yet."""

    def __init__(self) -> None:
        self._tickets: list[Ticket] = []
        self._lock = threading.Lock()

    def park(self, worker: Any, message: Any, why: str) -> None:
        """Raise SkipMessage for `message`, leaving it with RabbitMQ. Call from before_process_message."""
        thread = worker.consumers.get(message.queue_name) if worker is not None else None
        consumer = getattr(thread, "consumer", None)
        tag = getattr(message, "_tag", None)
        if consumer is None or tag is None:
            return  # not a RabbitMQ delivery: nothing safe to do, so let it run
        consumer.known_tags.discard(tag)
        with self._lock:
            self._tickets.append(Ticket(message.queue_name, consumer, tag))
        _parking.quiet = True  # the two warnings Dramatiq logs for this message are expected: see QuietParking
        raise SkipMessage(why)

    def release(self, queue: str | None = None) -> int:
        """Give parked messages (of one queue, or all) back to RabbitMQ now. Returns how many were nacked."""
        with self._lock:
            mine = [t for t in self._tickets if queue is None or t.queue == queue]
            self._tickets = [t for t in self._tickets if t not in mine]
        released = 0
        for ticket in mine:
            connection = ticket.consumer.connection
            if not connection.is_open:
                continue  # the channel closed, so RabbitMQ has requeued it already
            with contextlib.suppress(Exception):  # closing meanwhile: RabbitMQ requeues it anyway
                nack = partial(ticket.consumer.channel.basic_nack, ticket.tag, requeue=True)
                connection.add_callback_threadsafe(nack)
                released += 1
        return released

    def count(self, queue: str | None = None) -> int:
        with self._lock:
            return sum(1 for t in self._tickets if queue is None or t.queue == queue)


class QuietParking(logging.Filter):
    """Drops Dramatiq's "was skipped" and "not in known tags" warnings for a message this thread just parked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(_parking, "quiet", False):
            return True
        text = record.getMessage()
        if "was skipped" in text:
            return False
        if "not in known tags" in text:
            _parking.quiet = False  # the acknowledgement is the last thing that happens to a parked message
            return False
        return True


def install_quiet_parking() -> None:
    quiet = QuietParking()
    for name in ("dramatiq.worker.WorkerThread", "dramatiq.brokers.rabbitmq._RabbitmqConsumer"):
        logging.getLogger(name).addFilter(quiet)
