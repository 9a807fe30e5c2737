"""Noop jobs drained by `dramatiq service.actors` with the full middleware stack, against plain Dramatiq.

Both sides: the same RabbitMQ and Redis, Redis results, 2 processes x 5 threads, a job that increments a counter.
Rounds alternate so that drift on a shared machine hits both sides alike. Prints the ratio; the target is >= 0.9.
"""

from __future__ import annotations

import os
import statistics

import pytest
import redis

from tests.benchmarks.draining import JOBS, Drain, drain, fill

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def median(drains: list[Drain], field: str) -> float:
    return float(statistics.median(getattr(d, field) for d in drains))


@pytest.mark.parametrize("work_ms", [0, 5])
def test_worker_throughput_against_plain_dramatiq(work_ms: float) -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    plain: list[Drain] = []
    ours: list[Drain] = []
    for n in range(ROUNDS):
        fill("tests.benchmarks.plain_app", "plain_noop", f"'bench:plain:{work_ms}:{n}', work_ms={work_ms}")
        plain.append(drain(client, f"bench:plain:{work_ms}:{n}", "tests.benchmarks.plain_app", "bench-plain"))
        fill("tests.benchmarks.bench_actors", "service_noop", f"counter='bench:ours:{work_ms}:{n}', work_ms={work_ms}")
        ours.append(drain(client, f"bench:ours:{work_ms}:{n}", "tests.benchmarks.bench_actors", "bench"))
    ratio = median(ours, "rate") / median(plain, "rate")
    print(
        f"\nworker throughput, {JOBS} jobs of {work_ms} ms x {ROUNDS} rounds, 2 processes x 5 threads\n"
        f"  plain dramatiq : {', '.join(f'{d.rate:.0f}' for d in plain)} jobs/s (median {median(plain, 'rate'):.0f})\n"
        f"  service stack  : {', '.join(f'{d.rate:.0f}' for d in ours)} jobs/s (median {median(ours, 'rate'):.0f})\n"
        f"  ratio service/plain: {ratio:.2f} (target >= 0.9)\n"
        f"  CPU per job, workers only: plain {median(plain, 'worker_ms'):.2f} ms, service "
        f"{median(ours, 'worker_ms'):.2f} ms (ratio {median(plain, 'worker_ms') / median(ours, 'worker_ms'):.2f})\n"
        f"  CPU per job, workers + RabbitMQ + Redis: plain {median(plain, 'machine_ms'):.2f} ms, service "
        f"{median(ours, 'machine_ms'):.2f} ms (ratio {median(plain, 'machine_ms') / median(ours, 'machine_ms'):.2f}, "
        "the figure the throughput ratio follows when the machine is the limit)"
    )
    # Issue 2's target. It is not met today (0.55-0.67 at the last measurements): `make bench` says so by failing.
    assert ratio >= 0.9, f"service/plain throughput {ratio:.2f}, target >= 0.9"
