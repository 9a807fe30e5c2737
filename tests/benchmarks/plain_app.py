"""The baseline: plain Dramatiq on the same RabbitMQ and Redis, default middleware plus Redis results."""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

client = redis.Redis.from_url(os.environ["REDIS_URL"])
broker = RabbitmqBroker(url=os.environ["RABBITMQ_URL"], confirm_delivery=True, max_priority=10)
broker.add_middleware(Results(backend=RedisBackend(client=client)))  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench-plain", max_retries=3, store_results=True)
def plain_noop(counter: str, work_ms: float = 0) -> None:
    if work_ms:
        time.sleep(work_ms / 1000)
    client.incr(counter)
