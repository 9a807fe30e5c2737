"""Hand a delivered message back to RabbitMQ without running it and without acknowledging it.

Dramatiq has no "requeue" for a message a worker thread already holds: whatever happens in the hooks, the thread
acknowledges it (or dead-letters it) afterwards. Parking takes the delivery tag away from the consumer first, so
that acknowledgement is a no-op, and skips the message; RabbitMQ keeps it unacknowledged and delivers it again
when the consumer's channel closes (pause, stop) or when `release` nacks it with requeue.

`withhold` and `settle` do the same after a job ran: its message is acknowledged only once its outcome is recorded
(service/worker/hook_failures.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from dramatiq.middleware import SkipMessage

from service.rabbit.acks import delivered_by, settled_elsewhere

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

    def park(self, worker: Any, message: Any, why: str, *, release_in_s: float | None = None) -> None:
        """Raise SkipMessage for `message`, leaving it with RabbitMQ. Call from before_process_message.
        With `release_in_s`, the message is handed back that much later (else by `release`, or when the channel
        closes)."""
        ticket = self.withhold(worker, message)
        if ticket is None:
            return  # not a RabbitMQ delivery: nothing safe to do, so let it run
        with self._lock:
            self._tickets.append(ticket)
        if release_in_s is not None:
            timer = threading.Timer(release_in_s, self._release_one, (ticket,))
            timer.daemon = True
            timer.start()
        raise SkipMessage(why)

    def withhold(self, worker: Any, message: Any) -> Ticket | None:
        """Take `message` away from Dramatiq's acknowledgement (None if it is not a RabbitMQ delivery). The caller
        settles it later with `settle`, or RabbitMQ redelivers it when the channel closes."""
        thread = worker.consumers.get(message.queue_name) if worker is not None else None
        # The consumer whose channel delivered it, which may have closed since (then RabbitMQ requeued it already):
        # its tag means nothing on the channel that replaced it.
        consumer = delivered_by(message) or getattr(thread, "consumer", None)
        tag = getattr(message, "_tag", None)
        if consumer is None or tag is None:
            return None
        consumer.known_tags.discard(tag)
        _parking.quiet = True  # the warnings Dramatiq logs for this message are expected: see QuietParking
        return Ticket(message.queue_name, consumer, tag)

    def settle(self, ticket: Ticket, *, dead_letter: bool = False) -> bool:
        """Acknowledge a withheld message (or dead-letter it), from its connection's thread. False when its channel
        has closed meanwhile: RabbitMQ has redelivered it (or will)."""
        channel = ticket.consumer.channel
        if dead_letter:
            return _on_connection(ticket, partial(channel.basic_nack, ticket.tag, requeue=False))
        return _on_connection(ticket, partial(channel.basic_ack, ticket.tag))

    def requeue(self, ticket: Ticket) -> bool:
        """Hand a withheld message back to RabbitMQ now, to be delivered again."""
        return _requeue(ticket)

    def release(self, queue: str | None = None) -> int:
        """Give parked messages (of one queue, or all) back to RabbitMQ now. Returns how many were nacked."""
        with self._lock:
            mine = [t for t in self._tickets if queue is None or t.queue == queue]
            self._tickets = [t for t in self._tickets if t not in mine]
        return sum(_requeue(ticket) for ticket in mine)

    def _release_one(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket not in self._tickets:
                return  # released already
            self._tickets.remove(ticket)
        _requeue(ticket)

    def count(self, queue: str | None = None) -> int:
        with self._lock:
            return sum(1 for t in self._tickets if queue is None or t.queue == queue)


def _requeue(ticket: Ticket) -> bool:
    """Hand a withheld message back to RabbitMQ, to be delivered again."""
    return _on_connection(ticket, partial(ticket.consumer.channel.basic_nack, ticket.tag, requeue=True))


def _on_connection(ticket: Ticket, action: Callable[[], None]) -> bool:
    connection = ticket.consumer.connection
    if not connection.is_open:
        return False  # the channel closed, so RabbitMQ has requeued it already
    report = settled_elsewhere(ticket.consumer, ticket.tag)

    def settle() -> None:
        action()
        if report is not None:  # the consumer may acknowledge past this tag in one go now (service/rabbit/acks.py)
            report()

    try:
        connection.add_callback_threadsafe(settle)
    except Exception:  # closing meanwhile: RabbitMQ requeues it anyway
        return False
    return True


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
