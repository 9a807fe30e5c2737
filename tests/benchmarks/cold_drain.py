"""A full queue drained by a worker command started cold, measured from the command's start to the last job done.

The service and plain Dramatiq are two `Side`s of one measurement. A plain Dramatiq client (plain_sender.py) fills
the side's queue first; then `dramatiq MODULE --processes P --threads T --queues QUEUE` starts, and the clock runs
from that moment (worker start-up included) until the side's own evidence says the last job is done:
- the service: the job store counted it completed (the `completed` entries of its queue and actor, which the
  store's Lua writes in the same step as the record's outcome: the message is acknowledged only after it);
- plain Dramatiq: its result is in Redis (the results live in a Redis database of their own, so its size is the
  number of results; Dramatiq stores a result after the job ran and before it acknowledges the message).
Both sides run as production runs: JSON logs at INFO for the service, Dramatiq's default logging for plain; worker
metrics served on a free port by both (the service's WORKER_METRICS_PORT, Dramatiq's Prometheus middleware).

CPU is counted for the whole machine's share of the work: the `dramatiq` parent and every process under it (the
workers, the metrics server), from their start, plus RabbitMQ and Redis over the same interval. Other load on the
machine (other test runs using RabbitMQ or Redis) adds to the servers' figures alike for both sides; alternating
rounds and medians keep drift from favouring one side.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from service.domain.states import MAX_BROKER_PRIORITY
from service.store import keys
from tests.benchmarks import plain_sender
from tests.benchmarks.draining import cpu_seconds, servers
from tests.support import isolation
from tests.support.workers import ROOT

#: A side stops being waited for when no job got done for this long (a worker that cannot start, a refused queue).
STALL_S = 60.0

assert plain_sender.MAX_PRIORITY == MAX_BROKER_PRIORITY, "the plain client must declare queues as the service does"


@dataclass(frozen=True)
class Run:
    jobs: int
    seconds: float  #: from starting the command to the last job done
    first_s: float  #: from starting the command to the first job done: start-up plus one job
    first_jobs: int  #: jobs done when the first was seen
    steady_s: float  #: from the first job seen done to the last
    machine_ms: float  #: CPU ms per job: the command's processes, RabbitMQ and Redis, over the whole run
    worker_ms: float  #: CPU ms per job of the command's processes alone (parent, workers, metrics server)
    steady_machine_ms: float  #: CPU ms per job of everything, from the first job done to the last (start-up left out)

    @property
    def rate(self) -> float:
        """Jobs per second, worker start-up included."""
        return self.jobs / self.seconds

    @property
    def steady_rate(self) -> float:
        """Jobs per second once the first job is done: what the running worker sustains."""
        return (self.jobs - self.first_jobs) / self.steady_s if self.steady_s > 0 else 0.0


@dataclass
class Side:
    """How one side is filled, started and asked how many of its jobs are done."""

    name: str
    module: str  #: the module `dramatiq` loads
    queue: str
    actor: str
    env: Callable[[], dict[str, str]]  #: the worker command's environment, on top of this process's
    metrics_port: str  #: the variable in `env` naming the port its worker metrics are served on ("" for none)
    reset: Callable[[], object]  #: empties what `done` counts, before the queue is filled
    done: Callable[[], int]  #: jobs done so far
    failed: Callable[[], int] = field(default=lambda: 0)  #: jobs that failed (a run with any is not a measurement)
    json_logs: bool = False  #: its worker must log JSON lines (the service's production format)
    #: the checkout its worker command runs from, and that checkout's Python (another commit's tree, to compare)
    root: Path = ROOT
    python: str = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Results:
    """A Redis database of its own for Dramatiq results: its size, less the run's claim, is the number of jobs done."""

    client: redis.Redis
    url: str

    def count(self) -> int:
        with self.client.pipeline(transaction=False) as pipe:
            size, claimed = pipe.dbsize().exists(isolation.LOCK_KEY).execute()
        return int(size) - int(claimed)

    def reset(self) -> None:
        # Never FLUSHDB: the claim would go with it, and another test run could take the database mid-round.
        isolation.flush_except_lock(self.client)


@contextlib.contextmanager
def results_database() -> Iterator[Results]:
    """Claimed like the test run's own database, so that concurrent runs never share it."""
    db = isolation.claim_redis_db(f"bench-results-{os.getpid()}")
    results = Results(
        redis.Redis.from_url(f"redis://{isolation.HOST}:6379/{db}"), f"redis://{isolation.HOST}:6379/{db}"
    )
    try:
        yield results
    finally:
        results.client.close()
        isolation.release_redis_db(db)


def service_side(client: redis.Redis, without: str = "", results: Results | None = None) -> Side:
    """`dramatiq tests.benchmarks.bench_actors` (the service's full stack, less BENCH_WITHOUT), queue `bench`.

    Without the job store (StatusMiddleware) nothing records a job, so that variant stores Dramatiq results in
    `results` (bench_actors.py) and a job is done, as for plain Dramatiq, once its result is stored."""
    queue, actor = "bench", "bench_noop"
    gone = set(without.split(","))
    no_store = "StatusMiddleware" in gone
    if no_store and results is None:
        raise ValueError("without the job store, a results database says which jobs are done")

    def entered(state: str) -> int:
        return int(client.hget(keys.METRICS_ENTERED, f"{queue}|{actor}|{state}") or 0)

    def env() -> dict[str, str]:
        return {
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "WORKER_METRICS_PORT": str(free_port()),
            "BENCH_WITHOUT": without,
            "BENCH_RESULTS_URL": results.url if results else "",
        }

    def reset() -> None:
        isolation.flush_except_lock(client)  # each round starts with an empty job store
        if results:
            results.reset()

    return Side(
        name="service" if not without else f"service without {without}",
        module="tests.benchmarks.bench_actors",
        queue=queue,
        actor=actor,
        env=env,
        metrics_port="" if "WorkerMetrics" in gone else "WORKER_METRICS_PORT",
        reset=reset,
        done=results.count if no_store and results else lambda: entered("completed"),
        failed=lambda: entered("failed"),
        json_logs=True,
    )


@contextlib.contextmanager
def plain_side(results: Results) -> Iterator[Side]:
    """`dramatiq tests.benchmarks.plain_app`, queue `bench-plain`, its results in their own Redis database and its
    Prometheus files in a directory of their own."""

    def env() -> dict[str, str]:
        return {
            "BENCH_RESULTS_URL": results.url,
            "dramatiq_prom_host": "127.0.0.1",
            "dramatiq_prom_port": str(free_port()),
            "dramatiq_prom_db": metrics_db,
        }

    with tempfile.TemporaryDirectory(prefix="bench-plain-prometheus-") as metrics_db:
        yield Side(
            name="plain dramatiq",
            module="tests.benchmarks.plain_app",
            queue="bench-plain",
            actor="bench_noop",
            env=env,
            metrics_port="dramatiq_prom_port",
            reset=results.reset,
            done=results.count,
        )


def fill(side: Side, jobs: int, work_ms: float) -> None:
    side.reset()
    command = [sys.executable, "-m", "tests.benchmarks.plain_sender", side.queue, side.actor, str(jobs), str(work_ms)]
    subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def process_tree(root: int) -> list[int]:
    """`root` and every process under it, found through /proc (children first started, so none is missed)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(stat.parent.name)
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
            parents.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += parents.get(pid, [])
    return tree


def drain(side: Side, jobs: int, *, processes: int, threads: int, work_ms: float = 0) -> Run:
    """Fill the side's queue with `jobs` jobs, start its worker command and time it to the last job done."""
    fill(side, jobs, work_ms)
    log = Path(tempfile.mkstemp(prefix=f"bench-{side.queue}-", suffix=".log")[1])
    command = [side.python, "-m", "dramatiq", side.module, "--processes", str(processes), "--threads",
               str(threads), "--queues", side.queue]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(side.root), **side.env()}
    metrics_url = f"http://127.0.0.1:{env[side.metrics_port]}/metrics" if side.metrics_port else ""
    if (stale := side.done()) != 0:
        raise RuntimeError(f"{side.name}: {stale} jobs counted done before its worker started")
    others = servers()
    others_before = cpu_seconds(others)
    with log.open("ab") as out:
        started = time.monotonic()
        proc = subprocess.Popen(command, cwd=side.root, env=env, stdout=out, stderr=out, start_new_session=True)
    try:
        first: tuple[float, int, float] | None = None
        progress, progress_at = 0, started
        while True:
            done = side.done()
            now = time.monotonic()
            if done and first is None:
                # The CPU so far, to tell start-up from the steady drain; the processes are all alive now.
                first = (now, done, cpu_seconds(process_tree(proc.pid)) + cpu_seconds(others))
            if done >= jobs:
                assert first is not None
                own = cpu_seconds(process_tree(proc.pid))
                machine = own + cpu_seconds(others) - others_before
                check_production_settings(side, metrics_url, log)  # after the figures: it costs nothing measured
                log.unlink()
                return Run(
                    jobs=jobs,
                    seconds=now - started,
                    first_s=first[0] - started,
                    first_jobs=first[1],
                    steady_s=now - first[0],
                    machine_ms=machine * 1000 / jobs,
                    worker_ms=own * 1000 / jobs,
                    steady_machine_ms=(own + cpu_seconds(others) - first[2]) * 1000 / max(jobs - first[1], 1),
                )
            if done > progress:
                progress, progress_at = done, now
            failed = side.failed()
            if failed or proc.poll() is not None or now - progress_at > STALL_S:
                why = f"{failed} failed" if failed else "worker exited" if proc.poll() is not None else "stalled"
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{side.name}: {done} of {jobs} done, {why}; worker log {log}:\n{tail}")
            time.sleep(0.01)
    finally:
        stop(proc)


def check_production_settings(side: Side, metrics_url: str, log: Path) -> None:
    """The run was a production run: its worker metrics were served, and the service's workers logged JSON lines
    (Dramatiq's parent process keeps its own format: it logs before any of the service is loaded)."""
    lines = log.read_text(errors="replace").splitlines()
    if side.json_logs and not any(line.startswith("{") and '"dramatiq.WorkerProcess' in line for line in lines):
        raise RuntimeError(f"{side.name}: the workers did not log JSON lines; log {log}")
    if not metrics_url:
        return
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            served = response.status == 200 and bool(response.read())
    except OSError as error:
        served, why = False, str(error)
    else:
        why = "empty answer"
    if not served:
        raise RuntimeError(f"{side.name}: worker metrics not served at {metrics_url} ({why}); log {log}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
