"""What a per-key limit costs a job that it never holds back: the drain rate of keyed jobs under each limit (set high
enough never to bite) side by side with the same jobs under none, and the Redis round trips and commands per job.

- Rates: BENCH_JOBS (3000) no-op jobs over 50 keys, drained by a real `dramatiq` command (2 processes x 5 threads,
  tests/benchmarks/draining.py: from the first job done to the last), each variant in turn, BENCH_LIMIT_ROUNDS (3)
  rounds, the order reversed every other round. Target: each limit's rate >= 0.45 of the unlimited one (median over
  rounds of the round's ratio).
- Round trips and commands: the limits middleware's hooks around one start, against a redis-server of the benchmark's
  own (so `INFO commandstats` counts only them), through a connection that counts what it sends.

    .venv/bin/python -m pytest tests/benchmarks/test_key_limit_costs.py -p no:cacheprovider -s -o addopts="" -q
"""

from __future__ import annotations

import os
import statistics

import redis
from dramatiq.broker import MessageProxy

from service.bootstrap import broker, settings, store
from service.store.limits import LimitStore
from service.worker.middleware.limits import Limits
from tests.benchmarks.draining import JOBS, Drain, drain, fill
from tests.benchmarks.limit_bench_actors import QUEUE
from tests.benchmarks.test_flow_costs import COUNTED, CountingConnection, counted
from tests.support.own_redis import OwnRedis

ROUNDS = int(os.environ.get("BENCH_LIMIT_ROUNDS", "3"))
MODULE = "tests.benchmarks.limit_bench_actors"
KEYS = 50
TARGET = 0.45
#: variant -> the actor that has it
VARIANTS = {
    "no limit": "keyed_unlimited",
    "key_concurrency": "keyed_concurrency",
    "key_rate_limit": "keyed_rate",
    "throttle": "keyed_throttle",
}


def test_what_each_per_key_limit_costs_the_drain_rate_side_by_side() -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    runs: dict[str, list[Drain]] = {variant: [] for variant in VARIANTS}
    for n in range(ROUNDS):
        order = list(VARIANTS.items())
        for variant, actor in order if n % 2 == 0 else reversed(order):
            counter = f"bench:limits:{n}:{actor}"
            fill(MODULE, actor, f"counter='{counter}', account_id=f'k{{_ % {KEYS}}}'")
            runs[variant].append(drain(client, counter, MODULE, QUEUE))
    print(f"\n{JOBS} keyed no-op jobs over {KEYS} keys, 2 processes x 5 threads, {ROUNDS} rounds alternating (medians)")
    ratios = {}
    for variant, drains in runs.items():
        rate = statistics.median(d.rate for d in drains)
        ratios[variant] = statistics.median(d.rate / b.rate for d, b in zip(drains, runs["no limit"], strict=True))
        print(f"  {variant:16s} {rate:5.0f} jobs/s ({ratios[variant]:.2f} of no limit; rounds "
              f"{', '.join(f'{d.rate:.0f}' for d in drains)}), machine CPU ms/job "
              f"{statistics.median(d.machine_ms for d in drains):.2f}")  # fmt: skip
    for variant, ratio in ratios.items():
        assert ratio >= TARGET, f"{variant}: {ratio:.2f} of the unlimited drain rate, under {TARGET}"


def test_redis_round_trips_and_commands_per_start_under_each_limit() -> None:
    server = OwnRedis().start()
    try:
        pool = redis.ConnectionPool(connection_class=CountingConnection, host="127.0.0.1", port=server.port,
                                    decode_responses=True)  # fmt: skip
        client = redis.Redis(connection_pool=pool)
        limits = Limits(LimitStore(client), store, lease_ms=settings.job_lease_ms,
                        max_payload_bytes=settings.max_payload_bytes)  # fmt: skip
        figures = {}
        for variant, name in VARIANTS.items():
            actor = broker.get_actor(name)
            limits.before_declare_actor(broker, actor)
            messages = iter(
                MessageProxy(actor.message_with_options(kwargs={"counter": "c", "account_id": f"k{i % KEYS}"}))
                for i in range(COUNTED + 1)
            )

            def one_start() -> None:
                message = next(messages)  # noqa: B023
                limits.before_process_message(broker, message)
                limits.after_process_message(broker, message)

            one_start()  # warm-up: the script loaded, the connection open
            figures[variant] = counted(client, one_start)
        print(f"\nRedis per job, own redis-server, {COUNTED} starts each: round trips, commands (the script's own)")
        for variant, (trips, commands, us) in figures.items():
            print(f"  {variant:16s} {trips:.2f} round trips, {commands:.1f} commands, {us:.0f} µs")
        print("  (and, per worker process, one round trip every JOB_LEASE_MS / 3 renewing all its slots at once)")
        assert figures["no limit"][0] == 0
        assert figures["key_concurrency"][0] == 2  # take, give back
        assert figures["key_rate_limit"][0] == figures["throttle"][0] == 1  # take
    finally:
        server.close()
