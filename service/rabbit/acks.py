"""A RabbitMQ consumer that settles deliveries in batches: one wake-up of the connection's thread for many
acknowledgements, and one `basic_ack(multiple=True)` for every run of consecutive deliveries that are all done.

Dramatiq's consumer acknowledges each message on its own: every worker thread that finishes a job wakes the
connection's thread (a write to its wake-up pipe) to send one `basic.ack`, and RabbitMQ handles one frame per job.
Here a finishing thread only notes the delivery tag; the first note since the last batch asks the connection's
thread for one pass, which sends every nack first, then one multiple ack covering the longest run of settled tags
from the lowest one still open, then the remaining acks one by one. Nothing waits longer than that one pass, so
an acknowledgement is never held back behind a long job, and a message is still acknowledged only after Dramatiq
asked for it (after its outcome was recorded).

`multiple=True` settles every unacknowledged delivery up to its tag, so it is used only over tags whose fate this
consumer knows: acknowledged here, rejected here, or settled elsewhere and reported with `settled` (the parking lot
hands withheld messages back itself). A tag withheld and never reported only makes later acks go one by one.
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import Any

import pika.exceptions
from dramatiq.brokers.rabbitmq import _RabbitmqConsumer
from dramatiq.errors import ConnectionClosed

logger = logging.getLogger(__name__)


#: Set on each message this consumer delivers: a delivery tag names a delivery on its own channel only.
DELIVERED_BY = "_delivered_by"


def delivered_by(message: Any) -> BatchingConsumer | None:
    """The consumer whose channel delivered `message` (None: not one of these)."""
    consumer = getattr(message, DELIVERED_BY, None)
    return consumer if isinstance(consumer, BatchingConsumer) else None


class BatchingConsumer(_RabbitmqConsumer):
    def __init__(self, broker: Any, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
        self._start_batching()

    def _start_batching(self) -> None:
        """The batching state, empty (a subclass that opens its channel its own way calls this)."""
        self._lock = threading.Lock()
        self._acks: list[int] = []  #: tags to acknowledge, noted by worker threads
        self._nacks: list[int] = []  #: tags to reject (dead-letter), noted by any thread
        self._pass_asked = False
        # Touched only on the connection's thread (where __next__ and the pass run):
        self._floor = 0  #: every tag up to this one is settled
        self._settled_above: set[int] = set()  #: settled tags above the floor, waiting for the ones below them

    def __next__(self) -> Any:
        message = super().__next__()  # type: ignore[no-untyped-call]
        return self._mark(message) if message is not None else None

    def _mark(self, message: Any) -> Any:
        """Note on a message this consumer delivers that it did (see `_delivered_here`)."""
        setattr(message, DELIVERED_BY, self)
        return message

    # Called by Dramatiq's worker threads (ConsumerThread.post_process_message).

    def ack(self, message: Any) -> None:
        if not self._delivered_here(message):
            return
        try:
            self.known_tags.remove(message._tag)
        except KeyError:
            logger.warning("Failed to ack message: not in known tags.")
            return
        self._note(self._acks, message._tag)

    def nack(self, message: Any) -> None:
        if self._delivered_here(message):
            super().nack(message)  # type: ignore[no-untyped-call]

    def _delivered_here(self, message: Any) -> bool:
        """False for a message another consumer delivered: Dramatiq settles every message through the consumer it
        runs now, and after a reconnect (a network cut) a worker thread may still finish a message delivered on the
        closed channel. RabbitMQ requeued that one when its channel closed; its tag names another delivery here,
        which must not be settled in its place (tags start again at 1 on every channel)."""
        by = delivered_by(message)
        if by is None or by is self:
            return True
        logger.info("%s not settled: delivered on a channel that has closed since; RabbitMQ requeued it",
                    message.message_id)  # fmt: skip
        return False

    def _nack(self, tag: int) -> None:  # Dramatiq's nack (known tags already updated) and undecodable messages
        self._note(self._nacks, tag)

    def settled(self, tag: int) -> None:
        """A delivery withheld from this consumer was settled by other means (on the connection's thread)."""
        self._settle(tag)

    def _note(self, tags: list[int], tag: int) -> None:
        with self._lock:
            tags.append(tag)
            if self._pass_asked:
                return
            self._pass_asked = True
        try:
            self.connection.add_callback_threadsafe(self._settle_noted)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
            with self._lock:
                self._pass_asked = False
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]

    # On the connection's thread.

    def _settle_noted(self) -> None:
        with self._lock:
            acks, self._acks = self._acks, []
            nacks, self._nacks = self._nacks, []
            self._pass_asked = False
        for tag in nacks:  # before any multiple ack, which would otherwise take these in as acknowledged
            self.channel.basic_nack(tag, requeue=False)
            self._settle(tag)
        acks.sort()
        covered = 0
        for tag in acks:
            if tag == self._floor + 1:
                covered = tag
                self._settle(tag)
            else:
                break
        if covered:
            self.channel.basic_ack(covered, multiple=True)
        for tag in acks:
            if tag > covered:
                self.channel.basic_ack(tag)
                self._settle(tag)

    def _settle(self, tag: int) -> None:
        if tag <= self._floor:
            return
        self._settled_above.add(tag)
        while self._floor + 1 in self._settled_above:
            self._floor += 1
            self._settled_above.discard(self._floor)


def settled_elsewhere(consumer: Any, tag: int) -> partial[None] | None:
    """The call that tells a batching consumer a withheld tag was settled, or None for another consumer."""
    return partial(consumer.settled, tag) if isinstance(consumer, BatchingConsumer) else None
