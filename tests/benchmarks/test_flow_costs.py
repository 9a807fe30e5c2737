"""What singleton and debounce cost a job that uses them: the enqueue rate side by side with a job of the same
shape and key and no flow control, and the Redis round trips and commands per enqueue and per start.

- Rates: `Jobs.enqueue` (what POST /jobs/{actor} calls) and `actor.send()` from 8 threads, real RabbitMQ with
  confirms and the shared Redis, every send with its own key (so every singleton send is taken, not refused). Each
  thread sends the three variants in turn, call by call, so that the load of this shared machine falls on all of
  them alike. Target: each flow-controlled rate >= 0.7 of the plain one (median over rounds of the ratio).
- Round trips and commands: the same calls, one thread, against a redis-server of the benchmark's own (nothing else
  talks to it, so `INFO commandstats` counts only them), through a connection that counts what it sends. Per start:
  the worker's hooks (service/worker/middleware/singleton.py, debounce.py) on a message of a job that may run.

    .venv/bin/python -m pytest tests/benchmarks/test_flow_costs.py -p no:cacheprovider -s -o addopts="" -q
"""

from __future__ import annotations

import functools
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from dramatiq.broker import MessageProxy

from service.bootstrap import broker, settings, store
from service.domain import flow_control
from service.ops.jobs import Jobs
from service.store.flow_store import FlowStore
from service.store.job_store import JobStore
from service.worker.middleware.debounce import Debounce
from service.worker.middleware.singleton import Singleton
from service.worker.typed_actor import TypedActor
from tests.support.flow_actors import QUEUE, debounced, keyed, one_at_a_time
from tests.support.own_redis import OwnRedis

ROUNDS = int(os.environ.get("BENCH_FLOW_ROUNDS", "5"))
SENDS = int(os.environ.get("BENCH_FLOW_SENDS", "400"))  #: per variant and round
THREADS = 8
COUNTED = 200  #: calls per variant whose round trips and commands are counted
TARGET = 0.7  #: a flow-controlled enqueue rate against the plain one, at least

ACTORS: dict[str, TypedActor] = {"plain": keyed, "singleton": one_at_a_time, "debounce": debounced}


class CountingConnection(redis.Connection):
    """Counts what it sends: one command, or one pipeline, is one round trip."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sent += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis().start()
    try:
        yield server
    finally:
        server.close()


def payloads(tag: str) -> list[dict[str, Any]]:
    return [{"account_id": f"{tag}-{i}", "n": i} for i in range(SENDS)]


def interleaved(send: Callable[[TypedActor, dict[str, Any]], None], tag: str) -> dict[str, float]:
    """The enqueue rate of each variant, from THREADS threads that each send plain, singleton, debounce, plain, ...
    in turn (in a rotating order): every variant meets the same load at the same moments. Rate: THREADS over the
    mean time of one enqueue (Little's law; the threads are never idle)."""
    names = list(ACTORS)
    spent: dict[str, list[float]] = {name: [] for name in names}

    def work(thread: int) -> None:
        for i in range(SENDS // THREADS):
            for shift in range(len(names)):
                name = names[(i + thread + shift) % len(names)]
                payload = {"account_id": f"{tag}-{thread}-{i}-{name}", "n": i}
                started = time.perf_counter()
                send(ACTORS[name], payload)
                spent[name].append(time.perf_counter() - started)  # list.append is atomic

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(work, range(THREADS)))
    broker.flush(QUEUE)  # its queue and delay queue: no worker runs them
    return {name: THREADS / statistics.mean(times) for name, times in spent.items()}


def test_what_singleton_and_debounce_cost_an_enqueue_side_by_side() -> None:
    jobs = Jobs(broker, store)
    broker.declare_queue(QUEUE, ensure=True)
    ways: dict[str, Callable[[TypedActor, dict[str, Any]], None]] = {
        "Jobs.enqueue (the API's call)": functools.partial(through_jobs, jobs),
        "actor.send()": through_send,
    }
    rates: dict[str, list[dict[str, float]]] = {way: [] for way in ways}
    for n in range(ROUNDS):
        for way, send in ways.items() if n % 2 == 0 else reversed(ways.items()):
            rates[way].append(interleaved(send, f"{n}-{uuid.uuid4().hex[:6]}"))
    print(
        f"\nenqueue rate, {ROUNDS} rounds of {SENDS} jobs of each variant, {THREADS} threads sending the variants in "
        "turn, every send its own key (medians, jobs/s; in brackets against plain)"
    )
    ratios: dict[tuple[str, str], float] = {}
    for way, rounds in rates.items():
        median = {v: statistics.median(r[v] for r in rounds) for v in ACTORS}
        for v in ("singleton", "debounce"):
            ratios[(way, v)] = statistics.median(r[v] / r["plain"] for r in rounds)
        figures = ", ".join(f"{v} {median[v]:.0f} ({ratios[(way, v)]:.2f}x)" for v in ("singleton", "debounce"))
        print(f"  {way:30s} plain {median['plain']:.0f}, {figures}")
    for (way, variant), ratio in ratios.items():
        assert ratio >= TARGET, f"{way} {variant}: {ratio:.2f} of the plain enqueue rate, under {TARGET}"


def through_jobs(jobs: Jobs, actor: TypedActor, payload: dict[str, Any]) -> None:
    jobs.enqueue(actor.actor_name, payload)


def through_send(actor: TypedActor, payload: dict[str, Any]) -> None:
    actor.send(**payload)


def counted(client: redis.Redis, calls: Callable[[], None]) -> tuple[float, float, float]:
    """(round trips, Redis commands with the scripts' inner ones, µs) per call, over COUNTED calls."""
    client.config_resetstat()
    before = CountingConnection.sent
    started = time.perf_counter()
    for _ in range(COUNTED):
        calls()
    elapsed = time.perf_counter() - started
    trips = CountingConnection.sent - before
    stats = client.info("commandstats")
    commands = sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_evalsha", "cmdstat_config"))
    return trips / COUNTED, commands / COUNTED, elapsed / COUNTED * 1e6


def ready_to_start(actor: TypedActor, flow: FlowStore, i: int) -> MessageProxy:
    """The message of a job that may run, as the worker gets it: it holds its key's claim (singleton), it is its
    key's latest send (debounce)."""
    key = f"s{i}"
    message = actor.message_with_options(kwargs={"account_id": key})
    rules = flow_control.rules_of(actor.options)
    claim = rules.claim_name(actor.actor_name, key)
    if claim is not None:
        flow.claim([(claim, message.message_id)], pending_ms=flow_control.CLAIM_PENDING_MS)
        message.options[flow_control.CLAIM] = claim
    if rules.debounce_ms is not None:
        sent = flow_control.send_time_us()
        message.options[flow_control.SENT_AT] = sent
        flow.note_sends([(actor.actor_name, key, message.message_id, sent)], keep_ms=60_000)
    return MessageProxy(message)


def test_redis_round_trips_and_commands_per_enqueue_and_per_start(own_redis: OwnRedis) -> None:
    pool = redis.ConnectionPool(connection_class=CountingConnection, host="127.0.0.1", port=own_redis.port,
                                decode_responses=True)  # fmt: skip
    client = redis.Redis(connection_pool=pool)
    own_store = JobStore(client)
    jobs = Jobs(broker, own_store)
    flow = FlowStore(own_store)
    hooks = [
        Singleton(flow, own_store, max_payload_bytes=settings.max_payload_bytes),
        Debounce(flow, own_store, max_payload_bytes=settings.max_payload_bytes),
    ]
    broker.declare_queue(QUEUE, ensure=True)
    enqueue: dict[str, tuple[float, float, float]] = {}
    start: dict[str, tuple[float, float, float]] = {}
    for variant, actor in ACTORS.items():
        sends = iter(payloads(f"count-{variant}"))
        through_jobs(jobs, actor, next(sends))  # warm-up: scripts loaded, connections open
        enqueue[variant] = counted(client, lambda: through_jobs(jobs, actor, next(sends)))  # noqa: B023
        broker.flush(QUEUE)
        messages = iter([ready_to_start(actor, flow, i) for i in range(COUNTED + 1)])

        def one_start() -> None:
            message = next(messages)  # noqa: B023
            for hook in hooks:
                hook.before_process_message(broker, message)

        one_start()  # warm-up
        start[variant] = counted(client, one_start)
    print(f"\nRedis per job, own redis-server, {COUNTED} calls each: round trips, commands (scripts' own included)")
    for variant in ACTORS:
        (e_trips, e_commands, e_us), (s_trips, s_commands, s_us) = enqueue[variant], start[variant]
        print(
            f"  {variant:9s} enqueue: {e_trips:.2f} round trips, {e_commands:.1f} commands, {e_us:.0f} µs; "
            f"start (the flow hooks): {s_trips:.2f} round trips, {s_commands:.1f} commands, {s_us:.0f} µs"
        )
    for variant in ("singleton", "debounce"):
        # One round trip more than a plain job's, on each side: the claim or the note; the check before it starts.
        assert enqueue[variant][0] == enqueue["plain"][0] + 1, enqueue
        assert start[variant][0] == start["plain"][0] + 1, start
    assert start["plain"][0] == 0
