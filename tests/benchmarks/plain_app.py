"""The baseline: plain Dramatiq on the same RabbitMQ and Redis, its default middleware plus Redis results.

Run as production runs it: Prometheus metrics on when `dramatiq_prom_port` is set (Dramatiq 2.x no longer has its
Prometheus middleware among the defaults, so a deployment that wants metrics adds it, configured by the variables
dramatiq_prom_host/_port/_db), and results in the Redis of BENCH_RESULTS_URL (default REDIS_URL). The queues are
declared with the service's priority range, so that both sides drain the same kind of RabbitMQ queue.
"""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware.prometheus import Prometheus
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

client = redis.Redis.from_url(os.environ["REDIS_URL"])
results = redis.Redis.from_url(os.environ.get("BENCH_RESULTS_URL") or os.environ["REDIS_URL"])
broker = RabbitmqBroker(url=os.environ["RABBITMQ_URL"], confirm_delivery=True, max_priority=10)
broker.add_middleware(Results(backend=RedisBackend(client=results)))  # type: ignore[no-untyped-call]
if os.environ.get("dramatiq_prom_port"):  # noqa: SIM112 - the name Dramatiq reads
    broker.add_middleware(Prometheus())
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench-plain", max_retries=3, store_results=True)
def plain_noop(counter: str, work_ms: float = 0) -> None:
    """The soak benchmark's job: it counts itself."""
    if work_ms:
        time.sleep(work_ms / 1000)
    client.incr(counter)


@dramatiq.actor(queue_name="bench-plain", max_retries=3, store_results=True)
def bench_noop(work_ms: float = 0) -> None:
    """The throughput benchmark's job: nothing, or a sleep standing for I/O. It is done once its result is stored."""
    if work_ms:
        time.sleep(work_ms / 1000)
