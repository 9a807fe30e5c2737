"""Lifecycle events: relays the outbox that every state change writes in Redis to RabbitMQ's `jobs.events`.

The Lua scripts append each change to a Redis list in the same atomic step as the change itself. A relay thread
in every worker process takes the oldest events under a short lock (so order holds with many workers), publishes
them persistent, with publisher confirms, to the durable topic exchange `jobs.events` with routing key
`<actor>.<state>`, and only then removes them from the list. A crash in between publishes them again: delivery is
at least once, and each event carries a unique, increasing `eventId` to deduplicate on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
import redis

from service import keys
from service.amqp_frames import publish_frames

logger = logging.getLogger(__name__)

EXCHANGE = "jobs.events"

# Trim the published events only while still holding the lock: after a lost lock another relay owns the list.
_TRIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('LTRIM', KEYS[2], tonumber(ARGV[2]), -1)
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def declare_exchange(channel: Any) -> None:
    """Subscribers may call this too: declaring is idempotent as long as the arguments match."""
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)


def routing_key(event: dict[str, Any]) -> str:
    return f"{event['actor']}.{event['state']}"


@dataclass(frozen=True)
class Event:
    """One outbox entry, ready to publish."""

    routing_key: str
    body: bytes
    event_id: str
    state: str


def _event(item: str) -> Event | None:
    try:
        event = json.loads(item)
        return Event(routing_key(event), item.encode(), str(event.get("eventId", "")), str(event["state"]))
    except (ValueError, KeyError, TypeError):
        logger.error("dropping a malformed event from the outbox: %.200s", item)
        return None


class ConfirmedPublisher:
    """Publishes a batch to `jobs.events` and returns once RabbitMQ has confirmed every message of it.

    pika's BlockingChannel waits for each confirm in turn: a round trip per event, which made the relay cost more
    worker CPU than the jobs it reports on. The channel it wraps (`_impl`, the same object throughout pika 1.x)
    takes the confirms as callbacks, so a whole batch goes out and is confirmed together.
    """

    def __init__(self, connection: pika.BlockingConnection, *, timeout_s: float) -> None:
        self.connection = connection
        self.timeout_s = timeout_s
        blocking = connection.channel()
        declare_exchange(blocking)
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
        # Written to the socket in one go, with frames built here (service/amqp_frames.py): through pika, each
        # event cost a system call per frame and several times the CPU, on a worker's own threads.
        frames = b"".join(
            publish_frames(
                channel,
                EXCHANGE,
                e.routing_key,
                e.body,
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


class EventRelay:
    def __init__(
        self,
        client: redis.Redis,
        parameters: Any,
        *,
        batch: int = 500,
        idle_s: float = 0.05,
        lock_ms: int = 15_000,
        outbox: str = keys.EVENTS_OUTBOX,
        lock: str = keys.EVENTS_RELAY_LOCK,
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.lock = lock
        self.parameters = parameters
        self.batch = batch
        self.idle_s = idle_s
        self.lock_ms = lock_ms
        self._trim = client.register_script(_TRIM)
        self._release = client.register_script(_RELEASE)
        self._batches: ConfirmedPublisher | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one pass --------------------------------------------------------------------------------------------

    def relay_once(self) -> int:
        """Publish the oldest waiting events, up to `batch`. Returns how many went out (0: none, or another
        process holds the lock)."""
        if not self.client.llen(self.outbox):
            return 0  # the usual idle case: one cheap read, no lock
        token = uuid.uuid4().hex
        if not self.client.set(self.lock, token, nx=True, px=self.lock_ms):
            return 0
        try:
            raw = self.client.lrange(self.outbox, 0, self.batch - 1)
            if not raw:
                return 0
            self._publisher().publish([e for e in (_event(str(item)) for item in raw) if e is not None])
            self._trim(keys=[self.lock, self.outbox], args=[token, len(raw)])
            return len(raw)
        finally:
            with contextlib.suppress(redis.RedisError):
                self._release(keys=[self.lock], args=[token])

    def _publisher(self) -> ConfirmedPublisher:
        if self._batches is None or not self._batches.is_open:
            self.close()
            self._batches = ConfirmedPublisher(pika.BlockingConnection(self.parameters), timeout_s=self.lock_ms / 2000)
        return self._batches

    def close(self) -> None:
        batches, self._batches = self._batches, None
        if batches is not None:
            batches.close()

    # -- in a thread -----------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="event-relay", daemon=True)
        self._thread.start()

    def stop(self, drain_s: float = 5.0) -> None:
        """Stop the thread after one last drain, so the events of the jobs this worker just finished go out now."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(drain_s)
            if self._thread.is_alive():
                return  # stuck on a silent broker; pika connections are not shared between threads
        deadline = time.monotonic() + drain_s
        with contextlib.suppress(Exception):  # the next relay, in any worker, publishes what is left
            while time.monotonic() < deadline and self.relay_once():
                pass
        self.close()

    def _run(self) -> None:
        pause = 0.5
        while not self._stop.is_set():
            try:
                sent = self.relay_once()
                pause = 0.5
            except (redis.RedisError, pika.exceptions.AMQPError, OSError) as error:
                # Nothing is lost: the events stay in the outbox until a publish is confirmed.
                logger.warning("events not relayed yet (%s); retrying in %.1fs", type(error).__name__, pause)
                self.close()
                self._stop.wait(pause)
                pause = min(pause * 2, 10.0)
                continue
            if sent < self.batch // 4:
                # Little was waiting: let more gather first. Each round costs a few Redis round trips and a
                # confirm whatever its size, so under load bigger rounds are far cheaper per event.
                self._idle()

    def _idle(self) -> None:
        if self._batches is not None and self._batches.is_open:
            try:
                self._batches.connection.sleep(self.idle_s)  # serves heartbeats while waiting
                return
            except pika.exceptions.AMQPError:
                self.close()
        self._stop.wait(self.idle_s)
