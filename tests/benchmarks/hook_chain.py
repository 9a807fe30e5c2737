"""CPU per message of a worker's middleware hook chain, as a worker thread runs it: the "before" hooks, the actor
call (a no-op) and the "after" hooks, for N messages through the real broker's middleware list, with the job store
on a Redis database and a RabbitMQ vhost of this run's own. Each message is new to the store (a plain Dramatiq
sender's), so "active" writes its whole record, as on a worker's first sight of a job.

    .venv/bin/python -m tests.benchmarks.hook_chain [MESSAGES] [ROUNDS]

Prints the chain's CPU per message (this thread's CPU time: Redis's own work is not in it, the client's is), the
median over rounds, then each middleware's share from a second pass that times every hook on its own.
test_hook_chain.py asserts what the jobs-in-hand bookkeeping costs, from the same functions.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from tests.support import isolation

if __name__ == "__main__":  # run alone: a vhost and a Redis database of its own, before the service reads settings
    VHOST, DB = isolation.isolate()
    os.environ["WORKER_METRICS_PORT"] = "0"
    os.environ.setdefault("LOG_LEVEL", "WARNING")

import dramatiq
from dramatiq.broker import MessageProxy

from service.bootstrap import broker


@dramatiq.actor(queue_name="hook-chain")
def chain_noop() -> None:
    return None


def process(message: dramatiq.Message[Any]) -> None:
    """What Dramatiq's worker thread does with a message, short of fetching and acknowledging it."""
    proxy = MessageProxy(message)
    broker.emit_before("process_message", proxy)
    result = broker.get_actor(proxy.actor_name)(*proxy.args, **proxy.kwargs)
    broker.emit_after("process_message", proxy, result=result)


def chain_cpu_us(n: int) -> float:
    messages = [chain_noop.message() for _ in range(n)]
    start = time.thread_time()
    for message in messages:
        process(message)
    return (time.thread_time() - start) / n * 1e6


def per_middleware_us(n: int) -> dict[str, float]:
    """Each middleware's process_message hooks, timed one by one (the timing itself adds to every row alike)."""
    spent: dict[str, float] = defaultdict(float)

    def timed(name: str, hook: Callable[..., None]) -> Callable[..., None]:
        def call(*args: Any, **kwargs: Any) -> None:
            start = time.thread_time()
            try:
                hook(*args, **kwargs)
            finally:
                spent[name] += time.thread_time() - start

        return call

    for middleware in broker.middleware:
        name = type(middleware).__name__
        for hook in ("before_process_message", "after_process_message"):
            setattr(middleware, hook, timed(name, getattr(middleware, hook)))
    try:
        messages = [chain_noop.message() for _ in range(n)]
        start = time.thread_time()
        for message in messages:
            process(message)
        spent["(whole chain, timed)"] = time.thread_time() - start
    finally:
        for middleware in broker.middleware:
            for hook in ("before_process_message", "after_process_message"):
                vars(middleware).pop(hook, None)
    return {name: seconds / n * 1e6 for name, seconds in spent.items()}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    try:
        chain_cpu_us(300)  # warm-up: connections, script loading
        figures = [chain_cpu_us(n) for _ in range(rounds)]
        print(f"hook chain, {len(broker.middleware)} middlewares, {n} messages x {rounds} rounds")
        print(f"  CPU per message: median {statistics.median(figures):.1f} us, min {min(figures):.1f} us"
              f"  (rounds: {', '.join(f'{f:.1f}' for f in figures)})")  # fmt: skip
        shares = per_middleware_us(n)
        print("  per middleware (before + after hooks, us per message, timed one by one):")
        for name, us in sorted(shares.items(), key=lambda item: -item[1]):
            print(f"    {name:32s} {us:7.1f}")
    finally:
        isolation.release_redis_db(DB)
        isolation.delete_vhost(VHOST)


if __name__ == "__main__":
    main()
