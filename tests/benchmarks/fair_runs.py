"""What the fair-dispatch benchmarks share: send a tenant's jobs the way the API's batch route does, and read back
the runs the jobs noted (tests/support/fair_actors.py)."""

from __future__ import annotations

import statistics
import time

from service.bootstrap import redis_client
from service.ops.jobs import Jobs
from service.worker.typed_actor import TypedActor
from tests.support.fair_actors import Run, runs, runs_key

BATCH = 500


def send(jobs: Jobs, actor: TypedActor, tenant: str, count: int, sleep_ms: int) -> None:
    """`count` jobs of `tenant` (none: ""), recorded and published BATCH at a time, as POST /jobs/{actor}/batch."""
    for start in range(0, count, BATCH):
        payloads = [{"tenant": tenant, "n": n, "sleep_ms": sleep_ms, "sent_at": time.time()}
                    for n in range(start, min(start + BATCH, count))]  # fmt: skip
        jobs.enqueue_batch(actor.actor_name, payloads)


def wait_runs(queue: str, done: int, timeout_s: float, tenant: str | None = None) -> list[Run]:
    """The runs of `queue` once `done` of them (of `tenant`, if given) finished; fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        finished = runs(queue)
        if sum(1 for run in finished if tenant is None or run.tenant == tenant) >= done:
            return finished
        if time.monotonic() > deadline:
            raise AssertionError(f"{queue}: {len(finished)} runs after {timeout_s} s, waiting for {done}")
        time.sleep(0.05)


def forget_runs(queue: str) -> None:
    redis_client.delete(runs_key(queue))


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]
