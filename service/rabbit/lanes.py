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

A fair queue's lanes take turns (`turns=True`; service/rabbit/queue_types.py): the queue itself and its key lanes
make one tier per priority. The consumer then hands out at most `prefetch` messages not yet settled; each free slot
goes to the highest priority among the messages it holds (a message's own priority property: a classic queue's lane
orders by it too), and among the lanes offering that priority to the next lane in turn, one message a lane a turn.
Each lane has a prefetch of its own, so a lane with a backlog holds at most that many, and another lane's message
waits for one free slot, not behind the backlog.

Acknowledgements are batched as BatchingConsumer does: delivery tags count up across the channel's consumers.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
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


#: What waits in a lane: (minus its priority, arrival order, method, body), the next to go first.
_Held = tuple[int, int, Any, bytes]


class LaneConsumer(BatchingConsumer):
    """Dramatiq's consumer interface over several queues; `tiers` come highest priority first, each a list of lanes
    that take turns (a single lane, but for a fair queue's)."""

    def __init__(
        self, broker: Any, queue_name: str, tiers: list[list[str]], prefetch: int, timeout: int, *, turns: bool = False
    ) -> None:
        # Not Dramatiq's consumer set-up, which consumes one queue through pika's generator.
        self.broker = broker
        self.queue_name = queue_name
        self.logger = logger
        self.known_tags: set[int] = set()
        self._start_batching()
        self.lanes = [lane for tier in tiers for lane in tier]
        ranks = iter(range(len(self.lanes)))
        self._tiers = [[next(ranks) for _ in tier] for tier in tiers]  #: ranks (indexes of self.lanes) per tier
        self._cursor = [0] * len(tiers)  #: per tier, the position in it whose turn is next
        self.turns = turns
        self.prefetch = prefetch
        self.timeout_s = timeout / 1000
        self._waiting: list[list[_Held]] = [[] for _ in self.lanes]  #: delivered, not handed out (heaps)
        self._arrivals = itertools.count()
        self._in_hand = [0] * len(self.lanes)  #: delivered and not settled, per lane
        self._lane_of: dict[int, int] = {}  #: delivery tag -> lane, until settled
        self._handed: set[int] = set()  #: with turns: tags handed out and not settled
        self._full_until = [0.0] * len(self.lanes)  #: when each lane last stopped having a full prefetch in hand
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
            for rank, lane in enumerate(self.lanes):
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
        if self.turns and len(self._handed) >= self.prefetch:
            return None  # every slot taken: the next goes to whichever lane's turn it is once one is settled
        for number, tier in enumerate(self._tiers):
            offering = [rank for rank in tier if self._waiting[rank]]
            if not offering:
                continue
            if not all(self._ran_dry(higher) for above in self._tiers[:number] for higher in above):
                return None
            best = min(self._waiting[rank][0][0] for rank in offering)
            rank = self._take_turn(number, {rank for rank in offering if self._waiting[rank][0][0] == best})
            _, _, method, body = heapq.heappop(self._waiting[rank])
            if self.turns:
                self._handed.add(method.delivery_tag)
            return method, body
        return None

    def _take_turn(self, number: int, offering: set[int]) -> int:
        """The lane of tier `number` whose turn it is among `offering`; the turn then passes to the one after it."""
        tier = self._tiers[number]
        start = self._cursor[number]
        for step in range(len(tier)):
            position = (start + step) % len(tier)
            if tier[position] in offering:
                self._cursor[number] = (position + 1) % len(tier)
                return tier[position]
        raise AssertionError("no lane offering")  # offering is never empty

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
        # With turns, lanes of one tier hold messages of every priority (classic queues); otherwise a lane is one
        # priority, and its messages go in the order they came.
        priority = (getattr(properties, "priority", None) or 0) if self.turns else 0
        heapq.heappush(self._waiting[rank], (-priority, next(self._arrivals), method, body))
        self._in_hand[rank] += 1
        self._lane_of[method.delivery_tag] = rank

    def _settle(self, tag: int) -> None:
        self._handed.discard(tag)
        rank = self._lane_of.pop(tag, None)
        if rank is not None:
            if self._in_hand[rank] >= self.prefetch:
                self._full_until[rank] = time.monotonic()
            self._in_hand[rank] -= 1
        super()._settle(tag)

    def _cancelled_by_broker(self, method: Any) -> None:
        self._cancelled = f"RabbitMQ cancelled the consumer of {self.queue_name!r} ({method.method.consumer_tag})"
