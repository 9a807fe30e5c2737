"""Another service's plain Dramatiq client: fills a queue with jobs for an actor it only knows by name.

It imports nothing of `service` (nor of the tests' support code), as a producer written by another team would not:
a plain `RabbitmqBroker` and an actor declared with the consumer's actor name and queue, whose message body is what
the consumer's actor expects (for a @job: keyword arguments only, the payload model's fields). The service's worker
then meets jobs it has no record of (the first-sight path). Run it as a program:

    python -m tests.benchmarks.plain_sender QUEUE ACTOR COUNT [WORK_MS]
"""

from __future__ import annotations

import os
import sys
import time

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

#: The consumer's queue contract. The service declares its queues with x-max-priority 10 (service/domain/states.py
#: MAX_BROKER_PRIORITY) and Dramatiq's dead-letter arguments; RabbitMQ refuses (PRECONDITION_FAILED) a declaration
#: whose arguments differ from the first one, so a producer has to declare them alike. `RabbitmqBroker` builds the
#: same dead-letter arguments itself; only the priority range has to be told. The benchmarks check this value
#: against the service's.
MAX_PRIORITY = 10


def fill(queue: str, actor_name: str, count: int, work_ms: float) -> None:
    """Publish `count` jobs after emptying the queue (an aborted run's leftovers must not be counted), then wait
    until RabbitMQ holds all of them, so that a worker started next finds the queue full."""
    broker = RabbitmqBroker(url=os.environ["RABBITMQ_URL"], max_priority=MAX_PRIORITY)
    dramatiq.set_broker(broker)

    def remote(work_ms: float = 0) -> None:
        """Never run here: the body lives in the consumer."""

    actor = dramatiq.actor(actor_name=actor_name, queue_name=queue, broker=broker)(remote)
    broker.declare_queue(queue, ensure=True)  # queue, its .DQ and its .XQ, as the consumer declares them
    broker.channel.queue_purge(queue)
    for _ in range(count):
        actor.send(work_ms=work_ms)
    deadline = time.monotonic() + 120
    while (depth := broker.channel.queue_declare(queue, passive=True).method.message_count) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue {queue!r} holds {depth} of the {count} jobs sent")
        time.sleep(0.05)
    broker.close()


if __name__ == "__main__":
    queue, actor_name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fill(queue, actor_name, count, float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
