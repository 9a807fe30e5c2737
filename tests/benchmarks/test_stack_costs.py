"""What each feature of the worker stack costs a job: the throughput benchmark's no-op jobs drained by the full
stack and by the stack without one middleware at a time, beside plain Dramatiq, in alternating order.

The variants come from the stack itself (`service.bootstrap`'s middleware, as the worker builds it), so a middleware
added, renamed or removed changes the rows; bench_actors.py refuses a name that is not in the stack, so no row can
stand for nothing. A few middleware cannot be taken out alone (the service does not run without them, see KEPT);
they are listed, not measured. Everything else is as in test_worker_throughput.py (tests/benchmarks/cold_drain.py):
a plain Dramatiq client fills the queue, a cold `dramatiq` command with 2 processes x 8 threads drains it, JSON logs,
worker metrics served.

A feature's price is the full stack's machine CPU per job (the command's processes, RabbitMQ and Redis) minus that of
the stack without it, counted once the first job is done (start-up, the same for every row but noisy, left out).
The `workers` column (the command's processes alone, whole run) does not move with other load on RabbitMQ and Redis.
A negative price is a saving: without DirectWorkerLogs, log lines go through Dramatiq's parent process.

BENCH_COST_ONLY=StatusMiddleware,WorkerMetrics measures only those rows. A quick look:

    BENCH_COST_ROUNDS=1 BENCH_COST_JOBS=3000 .venv/bin/python -m pytest tests/benchmarks/test_stack_costs.py \
        -p no:cacheprovider -s -o addopts="" -q
"""

from __future__ import annotations

import os
import statistics

import pytest

from service.bootstrap import broker, redis_client
from tests.benchmarks.cold_drain import Results, Run, Side, drain, plain_side, results_database, service_side

ROUNDS = int(os.environ.get("BENCH_COST_ROUNDS", "2"))
JOBS = int(os.environ.get("BENCH_COST_JOBS", "5000"))
THREADS = 8
#: Only these middleware (comma-separated class names), for a quick look at a few rows; all of them by default.
ONLY = {name for name in os.environ.get("BENCH_COST_ONLY", "").split(",") if name}
FULL = "full stack"
PLAIN = "plain dramatiq"

#: Middleware the service's worker cannot run a job without; why, in a few words.
KEPT = {
    "RunningActors": "the registry of running jobs that stop, time limit, lease and status act through",
}


def stack() -> list[str]:
    return [type(m).__name__ for m in broker.middleware]


def measured() -> list[str]:
    return [name for name in stack() if name not in KEPT and (not ONLY or name in ONLY)]


def variants(results: Results) -> dict[str, Side]:
    sides = {FULL: service_side(redis_client)}
    for name in measured():
        sides[f"without {name}"] = service_side(redis_client, without=name, results=results)
    return sides


@pytest.mark.timeout(7200)
def test_what_each_feature_of_the_worker_stack_costs() -> None:
    gone = (set(KEPT) | ONLY) - set(stack())
    assert not gone, f"KEPT or BENCH_COST_ONLY name middleware that is not in the stack: {gone}"
    with results_database() as results, plain_side(results) as plain:
        sides = {**variants(results), PLAIN: plain}
        runs: dict[str, list[Run]] = {label: [] for label in sides}
        failures: dict[str, str] = {}
        for n in range(ROUNDS):
            order = list(sides.items())
            for label, side in order if n % 2 == 0 else order[::-1]:
                try:
                    runs[label].append(drain(side, JOBS, processes=2, threads=THREADS))
                except RuntimeError as error:  # the others are still measured; the assert below reports it
                    failures[label] = str(error).splitlines()[0]

    def figure(label: str, name: str) -> float:
        return float(statistics.median(getattr(r, name) for r in runs[label])) if runs[label] else float("nan")

    full = figure(FULL, "steady_machine_ms")
    print(f"\nworker stack costs: {JOBS} no-op jobs x {ROUNDS} rounds, 2 processes x {THREADS} threads (medians)")
    print(
        f"  {'':34s} {'jobs/s':>7s} {'CPU ms/job':>10s} {'steady':>7s} {'workers':>7s} {'price (full minus this)':>24s}"
    )
    for label in sides:
        price = f"{full - figure(label, 'steady_machine_ms'):+.3f} ms" if label not in (FULL, PLAIN) else ""
        note = f"  DID NOT DRAIN: {failures[label]}" if label in failures else ""
        print(
            f"  {label:34s} {figure(label, 'rate'):7.0f} {figure(label, 'machine_ms'):10.2f} "
            f"{figure(label, 'steady_machine_ms'):7.2f} {figure(label, 'worker_ms'):7.2f} {price:>19s}{note}"
        )
    for name, why in KEPT.items():
        print(f"  {name} stays in every row: {why}")
    assert not failures, f"variants that did not drain every job: {failures}"
    assert all(len(each) == ROUNDS and all(r.jobs == JOBS for r in each) for each in runs.values())
    assert len(runs) == len(measured()) + 2 and FULL in runs and PLAIN in runs
