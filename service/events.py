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
from typing import Any

import pika
import pika.exceptions
import redis

from service import keys

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
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one pass --------------------------------------------------------------------------------------------

    def relay_once(self) -> int:
        """Publish the oldest waiting events, up to `batch`. Returns how many went out (0: none, or another
        process holds the lock)."""
        token = uuid.uuid4().hex
        if not self.client.set(self.lock, token, nx=True, px=self.lock_ms):
            return 0
        try:
            raw = self.client.lrange(self.outbox, 0, self.batch - 1)
            if not raw:
                return 0
            channel = self._confirming_channel()
            for item in raw:
                self._publish(channel, str(item))
            self._trim(keys=[self.lock, self.outbox], args=[token, len(raw)])
            return len(raw)
        finally:
            with contextlib.suppress(redis.RedisError):
                self._release(keys=[self.lock], args=[token])

    def _publish(self, channel: Any, item: str) -> None:
        try:
            event = json.loads(item)
            key = routing_key(event)
        except (ValueError, KeyError, TypeError):
            logger.error("dropping a malformed event from the outbox: %.200s", item)
            return
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=str(event.get("eventId", "")),
            type=str(event["state"]),
            timestamp=int(time.time()),
        )
        # With confirms on, this returns once RabbitMQ has taken the message, and raises if it refused it.
        channel.basic_publish(EXCHANGE, key, item.encode(), properties)

    def _confirming_channel(self) -> Any:
        if self._channel is None or not self._channel.is_open:
            self.close()
            self._connection = pika.BlockingConnection(self.parameters)
            channel = self._connection.channel()
            channel.confirm_delivery()
            declare_exchange(channel)
            self._channel = channel
        return self._channel

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(Exception):  # being thrown away
                connection.close()

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
            if not sent:
                self._idle()

    def _idle(self) -> None:
        if self._connection is not None and self._connection.is_open:
            try:
                self._connection.sleep(self.idle_s)  # serves heartbeats while waiting
                return
            except pika.exceptions.AMQPError:
                self.close()
        self._stop.wait(self.idle_s)
