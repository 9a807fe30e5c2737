"""What RABBITMQ_QUEUE_TYPE changes: the arguments every queue is declared with, and where a message of each
priority goes.

classic (the default): one queue per actor queue, declared with `x-max-priority`, and RabbitMQ orders its messages
by their priority property, as Dramatiq does it.

quorum (for a cluster: each queue is replicated on every node and outlives the loss of a minority of them): RabbitMQ
3.x refuses `x-max-priority` on a quorum queue, so a queue's priorities are lanes, one quorum queue each: `<queue>.HQ`
for high, `<queue>` itself for normal (and for a message that names no priority, as plain Dramatiq sends it) and
`<queue>.LQ` for low. A worker consumes a queue's lanes on one channel and hands its threads a lower lane's message
only once the higher lanes run dry (service/rabbit/lanes.py). The delay queue and the dead-letter queue are single
quorum queues.

Fair queues (FAIR_QUEUES, service/worker/middleware/fair_lanes.py): a fair queue `<queue>` also has key lanes
`<queue>.K0` .. `<queue>.K{n-1}` (FAIR_LANES of them), each declared as the queue itself is, with the same
dead-lettering. A keyed message carries its lane in the message option `lane` and is published there; a message
without one (no key, or sent by a plain Dramatiq client) goes to the queue itself, which is one more lane of the
turn. With quorum queues each key lane has priority lanes of its own (`<queue>.K3.HQ`, `<queue>.K3`,
`<queue>.K3.LQ`): a worker takes turns across the lanes of the highest priority that has messages
(service/rabbit/lanes.py).

Quorum queues also count deliveries: a message delivered more than DELIVERY_LIMIT times without being settled (each
worker that took it died, or gave it back) is dead-lettered into `<queue>.XQ`, where a failed job's message goes. It
is a second guard against poison messages, behind the service's own: a job whose worker died under it three times is
failed (service/worker/middleware/status.py), long before this limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL
from dramatiq.common import dq_name, q_name, xq_name

from service.domain.states import BROKER_PRIORITY, MAX_BROKER_PRIORITY, Priority


class QueueType(StrEnum):
    #: One node: priorities through x-max-priority.
    CLASSIC = "classic"
    #: A cluster: replicated queues, priorities through lanes, a delivery limit.
    QUORUM = "quorum"


HIGH_LANE = ".HQ"
LOW_LANE = ".LQ"
#: A key lane: `<queue>.K<n>`.
KEY_LANE = ".K"
#: The message option holding a fair queue's key lane (an int, 0 <= lane < FAIR_LANES).
LANE_OPTION = "lane"
_KEY_LANE_SUFFIX = re.compile(r"\.K\d+$")

#: Deliveries of one message before a quorum queue dead-letters it. Every delivery that ends unsettled counts: a worker
#: killed while holding it, a paused queue handing it back, a message parked after a failed check (at most one every
#: 5 s: service/worker/hook_failures.py). High enough that those never add up to it in minutes of trouble; a message
#: that kills every worker taking it is stopped after that many worker deaths. RabbitMQ's `delivery-limit` policy
#: can lower it per queue without declaring the queue again.
DELIVERY_LIMIT = 50

_NORMAL = BROKER_PRIORITY[Priority.NORMAL]


def canonical(queue: str) -> str:
    """The actor queue a lane, delay queue or dead-letter queue belongs to."""
    for suffix in (HIGH_LANE, LOW_LANE):
        if queue.endswith(suffix):
            queue = queue[: -len(suffix)]
            break
    else:
        queue = q_name(queue)
    return _KEY_LANE_SUFFIX.sub("", queue)


@dataclass(frozen=True)
class QueueShape:
    """How this process declares its queues and addresses a message to one of them."""

    type: QueueType = QueueType.CLASSIC
    #: For classic queues: None declares them without priorities (plain Dramatiq's default).
    max_priority: int | None = MAX_BROKER_PRIORITY
    #: FAIR_QUEUES: names or patterns (`*` for any run of characters) of the queues with key lanes.
    fair: tuple[str, ...] = ()
    #: FAIR_LANES: key lanes per fair queue.
    fair_lanes: int = 8

    @property
    def quorum(self) -> bool:
        return self.type is QueueType.QUORUM

    def is_fair(self, queue: str) -> bool:
        """Whether the actor queue `queue` has key lanes."""
        return canonical(queue) == queue and any(fnmatchcase(queue, pattern) for pattern in self.fair)

    def valid_lane(self, key_lane: object) -> bool:
        """Whether a message's `lane` option names one of this shape's key lanes."""
        return isinstance(key_lane, int) and not isinstance(key_lane, bool) and 0 <= key_lane < self.fair_lanes

    def tiers(self, queue: str) -> list[list[str]]:
        """The queues a worker consumes for `queue`, by priority, highest first; a consumer takes turns across the
        queues of one priority (the queue itself first, then its key lanes)."""
        if canonical(queue) != queue:
            return [[queue]]
        turn = [queue, *(f"{queue}{KEY_LANE}{n}" for n in range(self.fair_lanes))] if self.is_fair(queue) else [queue]
        if not self.quorum:
            return [turn]
        return [[lane + HIGH_LANE for lane in turn], turn, [lane + LOW_LANE for lane in turn]]

    def lanes(self, queue: str) -> list[str]:
        """Every queue that holds `queue`'s waiting messages, highest priority first: the queue alone unless it has
        lanes (priority lanes with quorum queues, key lanes when it is fair)."""
        return [lane for tier in self.tiers(queue) for lane in tier]

    def lane_for(self, queue: str, broker_priority: int | None, key_lane: object = None) -> str:
        """Where a message for `queue` with this priority (and key lane, on a fair queue) is published (a delay
        queue's message goes to it as is). A key lane out of range (FAIR_LANES lowered since) counts as none."""
        if canonical(queue) != queue:
            return queue
        if self.is_fair(queue) and self.valid_lane(key_lane):
            queue = f"{queue}{KEY_LANE}{key_lane}"
        if not self.quorum or broker_priority is None:
            return queue
        if broker_priority > _NORMAL:
            return queue + HIGH_LANE
        if broker_priority < _NORMAL:
            return queue + LOW_LANE
        return queue

    def work_arguments(self, queue: str) -> dict[str, Any]:
        """Of the queue and each of its lanes: failed messages go to the dead-letter queue (Dramatiq's arguments, for
        classic queues, so that a plain Dramatiq client with max_priority declares the same)."""
        dead_letters = xq_name(canonical(queue))
        arguments: dict[str, Any] = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead_letters}
        if self.quorum:
            return {"x-queue-type": QueueType.QUORUM.value, **arguments, "x-delivery-limit": DELIVERY_LIMIT}
        if self.max_priority:
            arguments["x-max-priority"] = self.max_priority
        return arguments

    def delay_arguments(self, queue: str) -> dict[str, Any]:
        """Of the delay queue. No delivery limit: a worker holds every delayed message until it is due, so each of
        its restarts hands them all back, and a delayed job must not be dead-lettered for waiting through deploys."""
        if self.quorum:
            return {k: v for k, v in self.work_arguments(queue).items() if k != "x-delivery-limit"}
        return self.work_arguments(queue)

    def dead_arguments(self) -> dict[str, Any]:
        """Of the dead-letter queue: messages expire after Dramatiq's DEAD_MESSAGE_TTL (a static value, since
        RabbitMQ expires messages from the head)."""
        arguments: dict[str, Any] = {"x-message-ttl": DEAD_MESSAGE_TTL}
        return {"x-queue-type": QueueType.QUORUM.value, **arguments} if self.quorum else arguments

    def work_queues(self, queue: str) -> list[str]:
        """The queue, then its other lanes: declared in that order, so that a queue of the other type is found before
        any lane is created next to it."""
        return [queue, *(lane for lane in self.lanes(queue) if lane != queue)]

    def declarations(self, queue: str) -> list[tuple[str, dict[str, Any]]]:
        """Every queue `queue` needs, with its arguments: its work queues, then the delay and dead-letter queues."""
        work = [(name, self.work_arguments(queue)) for name in self.work_queues(queue)]
        return [*work, (dq_name(queue), self.delay_arguments(queue)), (xq_name(queue), self.dead_arguments())]
