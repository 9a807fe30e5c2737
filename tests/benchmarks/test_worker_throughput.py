"""Issue 13's throughput targets: the service's full worker stack against plain Dramatiq, side by side.

What is measured (tests/benchmarks/cold_drain.py says how): a plain Dramatiq client, importing nothing of the
service, fills a queue with BENCH_JOBS jobs (20,000); then `dramatiq ... --processes 2 --threads 8` starts and the
clock runs until the last job is done, worker start-up included. "Done" is each side's own evidence that a job
finished: for the service, its outcome recorded in the job store (the worker met each job for the first time, with
no record: the path jobs sent by other services take); for plain Dramatiq, its result stored in Redis. Both run as
production runs: JSON logs at INFO (service), worker metrics served (both). BENCH_ROUNDS rounds (3) alternate which
side goes first; the figures are medians of rounds.

Targets, each asserted after every figure is printed (they fail until the worker path is leaner):
- no-op jobs: drain rate service/plain >= 1.0; machine CPU per job (the command's processes, RabbitMQ, Redis)
  service/plain <= 1.0;
- 50 ms I/O-bound jobs (sleep), 2 processes x 50 threads, BENCH_IO_JOBS jobs (10,000): drain rate service/plain
  >= 1.0, and the service's steady rate (from its first job done to the last) >= 90 % of the concurrency bound,
  100 threads / 0.05 s = 2,000 jobs/s. The bound is a property of the running worker, so start-up is left out
  of that one figure: with it, 10,000 jobs at 2,000/s would leave 0.56 s for start-up, less than either side needs.

One quick round: BENCH_ROUNDS=1 BENCH_JOBS=5000 BENCH_IO_JOBS=3000
    .venv/bin/python -m pytest tests/benchmarks/test_worker_throughput.py -p no:cacheprovider -s -o addopts="" -q
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator

import pytest

from service.bootstrap import redis_client
from tests.benchmarks.cold_drain import Run, Side, drain, plain_side, results_database, service_side

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
JOBS = int(os.environ.get("BENCH_JOBS", "20000"))
IO_JOBS = int(os.environ.get("BENCH_IO_JOBS", "10000"))
IO_MS = 50
PROCESSES = 2
IO_BOUND = PROCESSES * 50 / (IO_MS / 1000)  #: jobs per second when every thread sleeps all the time


@pytest.fixture(scope="module")
def sides() -> Iterator[tuple[Side, Side]]:
    with results_database() as results, plain_side(results) as plain:
        yield service_side(redis_client), plain


def alternate(sides: tuple[Side, Side], jobs: int, threads: int, work_ms: float) -> dict[str, list[Run]]:
    """Every round drains both sides; even rounds start with the first side, odd ones with the second."""
    runs: dict[str, list[Run]] = {side.name: [] for side in sides}
    for n in range(ROUNDS):
        for side in sides if n % 2 == 0 else sides[::-1]:
            runs[side.name].append(drain(side, jobs, processes=PROCESSES, threads=threads, work_ms=work_ms))
    return runs


def median(runs: list[Run], figure: str) -> float:
    return float(statistics.median(getattr(run, figure) for run in runs))


def report(title: str, runs: dict[str, list[Run]]) -> None:
    print(f"\n{title}, {ROUNDS} rounds alternating (per round, then median)")
    for name, each in runs.items():
        print(
            f"  {name:15s} jobs/s incl. start-up: {', '.join(f'{r.rate:.0f}' for r in each)} "
            f"(median {median(each, 'rate'):.0f})\n"
            f"  {'':15s} steady jobs/s: {', '.join(f'{r.steady_rate:.0f}' for r in each)} "
            f"(median {median(each, 'steady_rate'):.0f}); first job done after "
            f"{', '.join(f'{r.first_s:.2f}' for r in each)} s\n"
            f"  {'':15s} machine CPU ms/job: {', '.join(f'{r.machine_ms:.2f}' for r in each)} "
            f"(median {median(each, 'machine_ms'):.2f}; of which the dramatiq processes "
            f"{median(each, 'worker_ms'):.2f}; steady part {median(each, 'steady_machine_ms'):.2f})"
        )


def ratios(runs: dict[str, list[Run]], figure: str) -> tuple[float, list[float]]:
    """service/plain of a figure: of the medians, and round by round."""
    ours, plain = runs["service"], runs["plain dramatiq"]
    per_round = [getattr(a, figure) / getattr(b, figure) for a, b in zip(ours, plain, strict=True)]
    return median(ours, figure) / median(plain, figure), per_round


def line(label: str, figure: tuple[float, list[float]], target: str) -> str:
    value, per_round = figure
    rounds = ", ".join(f"{r:.2f}" for r in per_round)
    paired = statistics.median(per_round)  # the stricter reading: each round's pair compared, then the median
    return f"  {label}: {value:.2f} (rounds {rounds}, their median {paired:.2f}; target {target})"


@pytest.mark.timeout(3600)
def test_no_op_jobs_drain_at_least_as_fast_as_plain_dramatiq_for_no_more_cpu(sides: tuple[Side, Side]) -> None:
    runs = alternate(sides, JOBS, threads=8, work_ms=0)
    report(f"no-op jobs: {JOBS} a round, sent by a plain Dramatiq client, {PROCESSES} processes x 8 threads", runs)
    rate, cpu = ratios(runs, "rate"), ratios(runs, "machine_ms")
    print(line("drain rate service/plain", rate, ">= 1.0"))
    print(line("machine CPU per job service/plain", cpu, "<= 1.0"))
    missed = [f"drain rate ratio {rate[0]:.2f} < 1.0"] if rate[0] < 1.0 else []
    missed += [f"CPU per job ratio {cpu[0]:.2f} > 1.0"] if cpu[0] > 1.0 else []
    assert not missed, "; ".join(missed)


@pytest.mark.timeout(3600)
def test_io_bound_jobs_drain_as_fast_as_plain_dramatiq_near_the_concurrency_bound(sides: tuple[Side, Side]) -> None:
    runs = alternate(sides, IO_JOBS, threads=50, work_ms=IO_MS)
    report(f"{IO_MS} ms I/O-bound jobs: {IO_JOBS} a round, {PROCESSES} processes x 50 threads", runs)
    rate = ratios(runs, "rate")
    steady = median(runs["service"], "steady_rate") / IO_BOUND
    print(line("drain rate service/plain", rate, ">= 1.0"))
    print(
        f"  service steady rate / concurrency bound {IO_BOUND:.0f} jobs/s: {steady:.2f} (target >= 0.90; "
        f"plain {median(runs['plain dramatiq'], 'steady_rate') / IO_BOUND:.2f}; with start-up, service "
        f"{median(runs['service'], 'rate') / IO_BOUND:.2f})"
    )
    missed = [f"drain rate ratio {rate[0]:.2f} < 1.0"] if rate[0] < 1.0 else []
    missed += [f"steady rate {steady:.2f} of the bound < 0.90"] if steady < 0.9 else []
    assert not missed, "; ".join(missed)
