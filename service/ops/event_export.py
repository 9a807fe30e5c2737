"""The RabbitMQ export of lifecycle events, off unless EVENTS_EXCHANGE names a topic exchange.

The event log is the Redis stream (service/ops/event_log.py). For a deployment that wants AMQP fan-out, one relay reads
it through a consumer group of its own and publishes each event persistent, with publisher confirms, to the durable
topic exchange with routing key `<actor>.<state>`, and acknowledges the entries (XACK) only once RabbitMQ confirmed
them. It runs in the scheduler process (service/worker/scheduler.py), never in workers. A lease in Redis lets one relay
at a time publish, however many schedulers run, so the export keeps the stream's order. A relay that dies or loses
RabbitMQ leaves its entries pending in the group; the next round, here or in the relay that takes over, publishes
them again first: delivery is at least once, and the `eventId` (the stream id, also the AMQP message-id) is the key
to deduplicate on. RabbitMQ is reached as every other call of the service reaches it, through the link
(service/rabbit/link.py): a channel of its own kept between batches (service/rabbit/batch_channel.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from typing import Any

import redis
from pika.adapters.blocking_connection import BlockingChannel

from service.background import BackgroundLoop
from service.ops.event_log import Event, parse_all
from service.rabbit.batch_channel import BatchChannel, Outgoing
from service.rabbit.link import BrokerUnreachable, RabbitLink
from service.store import keys, locks

logger = logging.getLogger(__name__)

#: The export reads the stream under this one consumer name: whoever holds the lease picks up what the previous
#: holder read and did not acknowledge (XREADGROUP from 0 lists exactly that consumer's pending entries).
CONSUMER = "relay"
#: How often a relay that does not hold the lease looks whether it may take over.
STANDBY_S = 1.0

# Take the lease, or extend it when this relay already holds it. KEYS: the lease; ARGV: token, ms.
_HOLD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""


def declare_exchange(channel: BlockingChannel, exchange: str) -> None:
    """Subscribers may call this too: declaring is idempotent as long as the arguments match."""
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)


def body(event: Event) -> bytes:
    return json.dumps(event.as_json(), separators=(",", ":")).encode()


def outgoing(event: Event) -> Outgoing:
    """The event as its AMQP message: the stream id is the message-id, the state the type."""
    return Outgoing(event.routing_key, body(event), event.event_id, event.state)


class EventExport:
    """The relay: stream -> consumer group -> RabbitMQ, in order, at least once. One round per export_once()."""

    def __init__(
        self,
        client: redis.Redis,
        link: RabbitLink,
        exchange: str,
        *,
        stream: str = keys.EVENTS,
        batch: int = 500,
        block_ms: int = 200,
        lease_ms: int = 15_000,
    ) -> None:
        self.client = client
        self.link = link
        self.exchange = exchange
        self.stream = stream
        self.group = keys.events_export_group(exchange)
        self.lease = keys.events_export_lease(exchange)
        self.batch = batch
        self.block_ms = block_ms
        self.lease_ms = lease_ms
        self.token = uuid.uuid4().hex
        self._hold = client.register_script(_HOLD)
        self._channel: BatchChannel | None = None
        #: False until this relay has read the group's pending entries since it (last) took the lease
        self._caught_up = False
        self._group_ready = False
        #: whether this relay held the lease at its last round
        self.holding = False
        self.loop = BackgroundLoop("event-export", self._run)

    # -- one round -------------------------------------------------------------------------------------------

    def export_once(self) -> int:
        """Publish the next events, up to `batch`, and acknowledge them once confirmed. Returns how many stream
        entries were settled (0: none waiting, or another relay holds the lease)."""
        self.holding = bool(self._hold(keys=[self.lease], args=[self.token, self.lease_ms]))
        if not self.holding:
            self._caught_up = False  # when the lease comes back, whatever the other holder left pending goes first
            return 0
        self._ensure_group()
        entries: list[Any] = []
        if not self._caught_up:
            entries = self._read("0")
            self._caught_up = not entries
        if not entries:
            entries = self._read(">", block_ms=self.block_ms)
        if not entries:
            return 0
        events = parse_all(entries)  # an entry trimmed while pending has no fields: nothing to publish
        if events:
            try:
                self._open().publish([outgoing(e) for e in events])
            except BaseException:
                self._caught_up = False  # they stay pending: the next round publishes them again, first
                raise
        self.client.xack(self.stream, self.group, *[entry_id for entry_id, _ in entries])
        return len(entries)

    def _read(self, start: str, block_ms: int | None = None) -> list[Any]:
        try:
            answer: Any = self.client.xreadgroup(
                self.group, CONSUMER, {self.stream: start}, count=self.batch, block=block_ms
            )
        except redis.ResponseError as error:
            if "NOGROUP" in str(error):
                self._group_ready = False  # the stream was deleted (FLUSHDB): made again next round
            raise
        return list(answer[0][1]) if answer else []

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From the first event the stream holds: turning the export on publishes what is kept, then the rest.
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    def _open(self) -> BatchChannel:
        if self._channel is None or not self._channel.is_open:
            self.close()
            # Confirms are waited for within half the lease at most: a round must end before its lease could lapse.
            self._channel = BatchChannel(
                self.link,
                self.exchange,
                prepare=lambda channel: declare_exchange(channel, self.exchange),
                timeout_s=self.lease_ms / 2000,
            )
        return self._channel

    def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def release(self) -> None:
        """Give the lease up (a clean stop), so another scheduler's relay takes over at once."""
        with contextlib.suppress(redis.RedisError):
            locks.release(self.client, self.lease, self.token)

    # -- in a thread -----------------------------------------------------------------------------------------

    def start(self) -> None:
        self.loop.start()

    def stop(self, drain_s: float = 5.0) -> None:
        if not self.loop.stop(drain_s):
            return  # stuck on a silent broker; its lease lapses and another relay takes over
        self.close()
        self.release()

    def _run(self) -> None:
        stopping = self.loop.stopping
        pause = 0.5
        while not stopping.is_set():
            try:
                settled = self.export_once()
                pause = 0.5
            except (redis.RedisError, BrokerUnreachable) as error:
                # Nothing is lost: unacknowledged entries stay pending in the group until a publish is confirmed.
                logger.warning(
                    "events not exported yet (%s: %s); retrying in %.1fs", type(error).__name__, error, pause
                )
                self.close()
                stopping.wait(pause)
                pause = min(pause * 2, 10.0)
                continue
            if not self.holding:
                stopping.wait(STANDBY_S)  # another relay publishes; look again in a while
            elif settled < self.batch // 4:
                # Little was waiting: let more gather first. A round costs a few Redis round trips and a confirm
                # whatever its size, so under load bigger rounds are far cheaper per event.
                self._idle()

    def _idle(self) -> None:
        """Another relay holds the lease, or nothing came within block_ms: serve heartbeats for a moment."""
        if self._channel is not None and self._channel.is_open:
            try:
                self._channel.idle(0.05)
                return
            except BrokerUnreachable:
                self.close()
        self.loop.stopping.wait(0.05)


def export_from_settings(exchange: str, client: redis.Redis, link: RabbitLink) -> EventExport | None:
    """The export EVENTS_EXCHANGE asks for, started; None when it is unset (the default: no export at all)."""
    if not exchange:
        return None
    export = EventExport(client, link, exchange)
    export.start()
    logger.info("exporting lifecycle events to the RabbitMQ exchange %s", exchange)
    return export
