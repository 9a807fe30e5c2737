"""Acknowledgements in batches (service/rabbit/acks.py) against a real RabbitMQ: a multiple ack never takes in a
delivery that is still open, rejected messages are dead-lettered, and a withheld one is settled only by its own call."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from typing import Any

import dramatiq
import pika
from dramatiq.common import xq_name

from service.bootstrap import broker
from service.rabbit.acks import BatchingConsumer

QUEUE = "test-acks"


def queue_figures(name: str) -> tuple[int, int]:
    """(ready, unacknowledged) of a queue in this run's vhost, as RabbitMQ counts them."""
    vhost = pika.URLParameters(os.environ["RABBITMQ_URL"]).virtual_host
    tool = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    out = subprocess.run([tool, "-q", "list_queues", "-p", vhost, "name", "messages_ready",
                          "messages_unacknowledged"], check=True, capture_output=True, text=True).stdout  # fmt: skip
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == name:
            return int(parts[1]), int(parts[2])
    raise AssertionError(f"queue {name} not found: {out}")


def wait_for(figures: tuple[int, int], name: str, consumer: BatchingConsumer, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    seen = queue_figures(name)
    while seen != figures:
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: (ready, unacked) {seen}, wanted {figures}")
        next(consumer)  # the connection's thread runs the passes the acks asked for
        seen = queue_figures(name)


def test_runs_of_acks_go_as_one_and_an_open_delivery_below_them_stays_open() -> None:
    broker.declare_queue(QUEUE, ensure=True)
    channel = broker.channel
    channel.queue_purge(QUEUE)
    channel.queue_purge(xq_name(QUEUE))
    for n in range(20):
        message = dramatiq.Message(queue_name=QUEUE, actor_name="none", args=(n,), kwargs={}, options={})
        channel.basic_publish(exchange="", routing_key=QUEUE, body=message.encode())
    consumer = BatchingConsumer(broker, QUEUE, prefetch=20, timeout=100)
    try:
        got: list[Any] = []
        while len(got) < 20:
            message = next(consumer)
            if message is not None:
                got.append(message)
        by_tag = {m._tag: m for m in got}
        assert sorted(by_tag) == list(range(1, 21))
        withheld = by_tag[3]
        consumer.known_tags.discard(withheld._tag)  # as the parking lot takes a message away from the consumer
        by_tag[7].fail()
        settle = [m for t, m in sorted(by_tag.items()) if t != 3]
        threads = [
            threading.Thread(target=lambda m=m: consumer.nack(m) if m.failed else consumer.ack(m)) for m in settle
        ]
        for thread in reversed(threads):  # from several threads, highest tags first
            thread.start()
        for thread in threads:
            thread.join()
        # The situation: every other delivery settled, the withheld one (tag 3, below most of them) still open.
        wait_for((0, 1), QUEUE, consumer)
        assert queue_figures(xq_name(QUEUE)) == (1, 0)  # the rejected one was dead-lettered, not taken in by an ack
        consumer.connection.add_callback_threadsafe(lambda: (consumer.channel.basic_ack(3), consumer.settled(3)))
        wait_for((0, 0), QUEUE, consumer)
        # Later deliveries are acknowledged past the settled floor as one run again.
        assert consumer._floor == 20
    finally:
        consumer.close()
        channel.queue_purge(xq_name(QUEUE))


def test_a_message_delivered_before_its_consumer_reconnected_is_never_settled_on_the_new_channel() -> None:
    """A worker thread that held a message while its consumer's connection died (a network cut) finishes it after
    Dramatiq has started a new consumer, and Dramatiq acknowledges it through that new consumer. Its delivery tag
    names another delivery there (tags start again at 1 on every channel): that one must not be acknowledged."""
    broker.declare_queue(QUEUE, ensure=True)
    channel = broker.channel
    channel.queue_purge(QUEUE)
    for n in range(2):
        message = dramatiq.Message(queue_name=QUEUE, actor_name="none", args=(n,), kwargs={}, options={})
        channel.basic_publish(exchange="", routing_key=QUEUE, body=message.encode())

    def first(consumer: BatchingConsumer) -> Any:
        deadline = time.monotonic() + 15
        while (message := next(consumer)) is None:
            assert time.monotonic() < deadline, "nothing delivered"
        return message

    before = BatchingConsumer(broker, QUEUE, prefetch=1, timeout=100)
    held = first(before)
    before.close()  # its channel closes: RabbitMQ requeues the held message...
    elsewhere = BatchingConsumer(broker, QUEUE, prefetch=1, timeout=100)
    after = BatchingConsumer(broker, QUEUE, prefetch=1, timeout=100)
    try:
        assert first(elsewhere).message_id == held.message_id  # ...and another worker takes it
        other = first(after)
        # The situation: the reconnected consumer's delivery has the tag the held message had on the closed channel.
        assert other.message_id != held.message_id and other._tag == held._tag == 1
        after.ack(held)  # as Dramatiq's ConsumerThread.post_process_message does, through its current consumer
        for _ in range(5):
            next(after)  # the connection's thread runs any pass the ack asked for
        assert queue_figures(QUEUE) == (0, 2), "the new channel's delivery was acknowledged for the held message"
    finally:
        after.close()
        elsewhere.close()
    assert queue_figures(QUEUE) == (2, 0)  # both back in the queue: nothing was settled in another's place
    channel.queue_purge(QUEUE)
