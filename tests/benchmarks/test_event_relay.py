"""What relaying one lifecycle event costs: the relay as it is (frames packed here, a round written at once) against
the same relay publishing through pika's channel, message by message, as it did before; side by side, alternating.

Both take the same outbox of EVENTS events and publish them, with confirms, to `jobs.events`. Printed: CPU
microseconds per event of this process and of RabbitMQ, and the ratio.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

import pika
import redis
from service.events import EXCHANGE, ConfirmedPublisher, Event, EventRelay

from tests.benchmarks.draining import cpu_seconds, servers

EVENTS = int(os.environ.get("BENCH_EVENTS", "20000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
OUTBOX, LOCK = "bench:relay:outbox", "bench:relay:lock"


class ThroughPika(ConfirmedPublisher):
    """The baseline: each event through pika's Channel.basic_publish, which builds and writes its frames."""

    def publish(self, events: list[Event]) -> None:
        for e in events:
            properties = pika.BasicProperties(
                content_type="application/json", delivery_mode=2, message_id=e.event_id, type=e.state,
                timestamp=int(time.time()),
            )  # fmt: skip
            self._channel.basic_publish(EXCHANGE, e.routing_key, e.body, properties)
            self._outstanding.add(self._next_tag)
            self._next_tag += 1
        self._wait_for(lambda: not self._outstanding)


def fill(client: redis.Redis) -> None:
    client.delete(OUTBOX)
    pipe = client.pipeline(transaction=False)
    for n in range(EVENTS):
        event: dict[str, Any] = {"eventId": n, "jobId": f"{n:036d}", "actor": "service_noop", "queue": "bench"}
        event |= {"state": "completed", "at": "2026-11-28T20:00:00.000Z", "run": 0, "retry": 0}
        pipe.rpush(OUTBOX, json.dumps(event))
    pipe.execute()


def relay_all(relay: EventRelay) -> tuple[float, float]:
    """(this process's, RabbitMQ's) CPU microseconds per event to relay the whole outbox."""
    rabbit = servers()[:1]
    mine, theirs = time.process_time(), cpu_seconds(rabbit)
    sent = 0
    while n := relay.relay_once():
        sent += n
    assert sent == EVENTS
    return (time.process_time() - mine) * 1e6 / sent, (cpu_seconds(rabbit) - theirs) * 1e6 / sent


def test_relaying_an_event_against_publishing_it_through_pika() -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)  # as the service reads it
    broker_parameters = pika.URLParameters(os.environ["RABBITMQ_URL"])
    results: dict[str, list[tuple[float, float]]] = {"relay": [], "through pika": []}
    for n in range(ROUNDS):
        for name in ("relay", "through pika") if n % 2 == 0 else ("through pika", "relay"):
            fill(client)
            relay = EventRelay(client, broker_parameters, outbox=OUTBOX, lock=LOCK)
            if name == "through pika":
                relay._batches = ThroughPika(pika.BlockingConnection(broker_parameters), timeout_s=30)
            try:
                results[name].append(relay_all(relay))
            finally:
                relay.close()
    client.delete(OUTBOX, LOCK)

    def median(name: str, side: int) -> float:
        return float(statistics.median(r[side] for r in results[name]))

    print(f"\nevent relay, {EVENTS} events x {ROUNDS} rounds, CPU microseconds per event (medians)")
    for name in results:
        print(f"  {name:13s}: this process {median(name, 0):5.1f}, RabbitMQ {median(name, 1):5.1f}")
    ours = median("relay", 0) + median("relay", 1)
    ratio = ours / (median("through pika", 0) + median("through pika", 1))
    print(f"  relay / through pika, both processes: {ratio:.2f}")
    # The relay packs its own frames to cost less than pika's channel (0.47 of it at the last measurement).
    assert ratio < 1.0, f"the relay costs {ratio:.2f} of pika's CPU per event, target < 1.0"
