"""The RabbitMQ export of lifecycle events, off unless EVENTS_EXCHANGE names a topic exchange.

The event log is the Redis stream (service/ops/event_log.py). For a deployment that wants AMQP fan-out, one relay reads
it through a consumer group of its own and publishes each event persistent, with publisher confirms, to the durable
topic exchange with routing key `<actor>.<state>`, and acknowledges the entries (XACK) only once RabbitMQ confirmed
them. It runs in the scheduler process (service/worker/scheduler.py), never in workers. A lease in Redis lets one relay
at a time publish, however many schedulers run, so the export keeps the stream's order. A relay that dies or loses
RabbitMQ leaves its entries pending in the group; the next round, here or in the relay that takes over, publishes
them again first: delivery is at least once, and the `eventId` (the stream id, also the AMQP message-id) is the key
to deduplicate on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
import redis

from service.ops.event_log import Event, parse_all
from service.rabbit.amqp_frames import publish_frames
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


def declare_exchange(channel: Any, exchange: str) -> None:
    """Subscribers may call this too: declaring is idempotent as long as the arguments match."""
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)


def body(event: Event) -> bytes:
    return json.dumps(event.as_json(), separators=(",", ":")).encode()


class ConfirmedPublisher:
    """Publishes a batch to the export's exchange and returns once RabbitMQ has confirmed every message of it.

    pika's BlockingChannel waits for each confirm in turn: a round trip per event, which made the relay cost more
    worker CPU than the jobs it reports on. The channel it wraps (`_impl`, the same object throughout pika 1.x)
    takes the confirms as callbacks, so a whole batch goes out and is confirmed together.
    """

    def __init__(self, connection: pika.BlockingConnection, exchange: str, *, timeout_s: float) -> None:
        self.connection = connection
        self.exchange = exchange
        self.timeout_s = timeout_s
        blocking = connection.channel()
        declare_exchange(blocking, exchange)
        self._channel: Any = blocking._impl
        self._next_tag = 1
        self._outstanding: set[int] = set()
        self._refused = 0
        ready: list[object] = []
        self._channel.confirm_delivery(self._on_confirm, callback=ready.append)
        self._wait_for(lambda: bool(ready))

    @property
    def is_open(self) -> bool:
        return bool(self.connection.is_open and self._channel.is_open)

    def publish(self, events: list[Event]) -> None:
        """Raises if RabbitMQ refused any event or did not confirm them all in time: publish them again."""
        self._refused = 0
        connection = self._channel.connection
        channel, frame_max, now = self._channel.channel_number, connection.params.frame_max, int(time.time())
        # Written to the socket in one go, with frames built here (service/rabbit/amqp_frames.py): through pika, each
        # event cost a system call per frame and several times the CPU.
        frames = b"".join(
            publish_frames(
                channel,
                self.exchange,
                e.routing_key,
                body(e),
                message_id=e.event_id,
                message_type=e.state,
                timestamp=now,
                frame_max=frame_max,
            )
            for e in events
        )
        if not self.is_open:
            raise pika.exceptions.ChannelWrongStateError("channel closed before the events were published")
        connection._adapter_emit_data(frames)
        connection.bytes_sent += len(frames)  # read by pika's heartbeat checker
        self._outstanding.update(range(self._next_tag, self._next_tag + len(events)))
        self._next_tag += len(events)
        self._wait_for(lambda: not self._outstanding)
        if self._refused:
            raise pika.exceptions.NackError([])

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
                raise pika.exceptions.ChannelWrongStateError("channel closed before RabbitMQ confirmed the events")
            if time.monotonic() > deadline:
                raise pika.exceptions.AMQPConnectionError(f"no confirms from RabbitMQ within {self.timeout_s:g}s")
            self.connection.process_data_events(time_limit=0.05)

    def close(self) -> None:
        if self.connection.is_open:
            with contextlib.suppress(Exception):  # being thrown away
                self.connection.close()


class EventExport:
    """The relay: stream -> consumer group -> RabbitMQ, in order, at least once. One round per export_once()."""

    def __init__(
        self,
        client: redis.Redis,
        parameters: Any,
        exchange: str,
        *,
        stream: str = keys.EVENTS,
        batch: int = 500,
        block_ms: int = 200,
        lease_ms: int = 15_000,
    ) -> None:
        self.client = client
        self.parameters = parameters
        self.exchange = exchange
        self.stream = stream
        self.group = keys.events_export_group(exchange)
        self.lease = keys.events_export_lease(exchange)
        self.batch = batch
        self.block_ms = block_ms
        self.lease_ms = lease_ms
        self.token = uuid.uuid4().hex
        self._hold = client.register_script(_HOLD)
        self._publisher: ConfirmedPublisher | None = None
        #: False until this relay has read the group's pending entries since it (last) took the lease
        self._caught_up = False
        self._group_ready = False
        #: whether this relay held the lease at its last round
        self.holding = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
                self._open().publish(events)
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

    def _open(self) -> ConfirmedPublisher:
        if self._publisher is None or not self._publisher.is_open:
            self.close()
            connection = pika.BlockingConnection(self.parameters)
            self._publisher = ConfirmedPublisher(connection, self.exchange, timeout_s=self.lease_ms / 2000)
        return self._publisher

    def close(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.close()

    def release(self) -> None:
        """Give the lease up (a clean stop), so another scheduler's relay takes over at once."""
        with contextlib.suppress(redis.RedisError):
            locks.release(self.client, self.lease, self.token)

    # -- in a thread -----------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="event-export", daemon=True)
        self._thread.start()

    def stop(self, drain_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(drain_s)
            if self._thread.is_alive():
                return  # stuck on a silent broker; its lease lapses and another relay takes over
        self.close()
        self.release()

    def _run(self) -> None:
        pause = 0.5
        while not self._stop.is_set():
            try:
                settled = self.export_once()
                pause = 0.5
            except (redis.RedisError, pika.exceptions.AMQPError, OSError) as error:
                # Nothing is lost: unacknowledged entries stay pending in the group until a publish is confirmed.
                logger.warning(
                    "events not exported yet (%s: %s); retrying in %.1fs", type(error).__name__, error, pause
                )
                self.close()
                self._stop.wait(pause)
                pause = min(pause * 2, 10.0)
                continue
            if not self.holding:
                self._stop.wait(STANDBY_S)  # another relay publishes; look again in a while
            elif settled < self.batch // 4:
                # Little was waiting: let more gather first. A round costs a few Redis round trips and a confirm
                # whatever its size, so under load bigger rounds are far cheaper per event.
                self._idle()

    def _idle(self) -> None:
        """Another relay holds the lease, or nothing came within block_ms: serve heartbeats for a moment."""
        if self._publisher is not None and self._publisher.is_open:
            try:
                self._publisher.connection.sleep(0.05)
                return
            except pika.exceptions.AMQPError:
                self.close()
        self._stop.wait(0.05)


def export_from_settings(exchange: str, client: redis.Redis, parameters: Any) -> EventExport | None:
    """The export EVENTS_EXCHANGE asks for, started; None when it is unset (the default: no export at all)."""
    if not exchange:
        return None
    export = EventExport(client, parameters, exchange)
    export.start()
    logger.info("exporting lifecycle events to the RabbitMQ exchange %s", exchange)
    return export
