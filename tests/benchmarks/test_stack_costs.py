"""What each feature of the worker stack costs: the throughput benchmark's no-op jobs, drained by the full stack
and by the stack without one middleware at a time, beside plain Dramatiq, in alternating order.

The difference in CPU per job (workers, their parent, RabbitMQ and Redis together) between the full stack and the
stack without a feature is that feature's price; it is what to look at before optimising. A negative difference
is a saving: the last variant sends worker log lines through Dramatiq's parent, as it would without DirectWorkerLogs.
"""

from __future__ import annotations

import os
import statistics

import redis

from tests.benchmarks.draining import JOBS, Drain, drain, fill

ROUNDS = int(os.environ.get("BENCH_COST_ROUNDS", "2"))

#: label -> middleware class names taken out (BENCH_WITHOUT, read by bench_actors)
VARIANTS = {
    "full stack": "",
    "without lifecycle events (EventRelaying)": "EventRelaying",
    "without worker Prometheus metrics (WorkerMetrics)": "WorkerMetrics",
    "without the job store (StatusMiddleware)": "StatusMiddleware",
    "worker logs through Dramatiq's parent (no DirectWorkerLogs)": "DirectWorkerLogs",
}


def test_what_each_feature_of_the_worker_stack_costs() -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    results: dict[str, list[Drain]] = {"plain dramatiq": [], **{label: [] for label in VARIANTS}}
    for n in range(ROUNDS):
        order = list(VARIANTS.items())
        for label, without in order if n % 2 == 0 else reversed(order):
            counter = f"bench:costs:{n}:{without or 'full'}"
            env = {"BENCH_WITHOUT": without}
            fill("tests.benchmarks.bench_actors", "service_noop", f"counter='{counter}'", env)
            results[label].append(drain(client, counter, "tests.benchmarks.bench_actors", "bench", env))
        fill("tests.benchmarks.plain_app", "plain_noop", f"'bench:costs:{n}:plain'")
        results["plain dramatiq"].append(
            drain(client, f"bench:costs:{n}:plain", "tests.benchmarks.plain_app", "bench-plain")
        )

    def cpu(label: str) -> float:
        return float(statistics.median(d.machine_ms for d in results[label]))

    full = cpu("full stack")
    print(f"\nworker stack costs, {JOBS} no-op jobs x {ROUNDS} rounds, 2 processes x 5 threads (medians)")
    print(f"  {'':62s} {'jobs/s':>7s} {'CPU ms/job':>10s} {'full minus this':>15s}")
    for label, drains in results.items():
        rate = statistics.median(d.rate for d in drains)
        price = f"{full - cpu(label):+.2f} ms" if label in VARIANTS and label != "full stack" else ""
        print(f"  {label:62s} {rate:7.0f} {cpu(label):10.2f} {price:>15s}")
    assert all(d.rate > 0 for drains in results.values() for d in drains)
