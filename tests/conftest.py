"""Every test run talks to the real RabbitMQ and Redis, in a vhost and a database of its own."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dramatiq.common import dq_name

from tests.support import isolation

# Before anything imports `service`: settings are read once, at import.
_VHOST, _DB = isolation.isolate()
os.environ.setdefault("LOG_FORMAT", "console")
os.environ.setdefault("JOB_RETRY_DELAYS_MS", "100,200,300")
os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,::1,testserver")  # TestClient sends Host: testserver
os.environ.setdefault("WORKER_METRICS_PORT", "0")  # test workers serve metrics only when a test asks, on a free port
os.environ.setdefault("FAIR_QUEUES", "fair-*")  # the fair-dispatch tests' queues (tests/support/fair_actors.py)

from service.bootstrap import broker, redis_client, store  # noqa: E402
from service.ops.jobs import Jobs  # noqa: E402
from service.store import keys  # noqa: E402
from tests.support import fault_reports, test_actors  # noqa: E402,F401
from tests.support.graveyard import empty  # noqa: E402
from tests.support.workers import WorkerProcess  # noqa: E402


def pytest_unconfigure(config: pytest.Config) -> None:
    isolation.delete_vhost(_VHOST)
    isolation.release_redis_db(_DB)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # In a pytest-xdist worker: hand the fault rows to the controller, which prints the table.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["fault_reports"] = fault_reports.dumps(fault_reports.REPORTS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """pytest-xdist: a worker finished; keep its fault rows."""
    workeroutput = getattr(node, "workeroutput", {})
    fault_reports.REPORTS.extend(fault_reports.loads(workeroutput.get("fault_reports", "[]")))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not fault_reports.REPORTS:
        return
    terminalreporter.section("faults injected")
    for line in fault_reports.table(fault_reports.REPORTS):
        terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def clean_redis() -> Iterator[None]:
    isolation.flush_except_lock(redis_client)
    yield


@pytest.fixture(autouse=True)
def fresh_broker_connection() -> None:
    """Each test opens its own connection to RabbitMQ when it first needs one. A blocking pika connection serves
    heartbeats only while it is used, so one left idle through a long test of another module (xdist runs a module at
    a time per process) is dropped by RabbitMQ and fails the next test that touches it."""
    del broker.connection  # Dramatiq's deleter closes this thread's connection and channel, if any


@pytest.fixture
def jobs() -> Jobs:
    return Jobs(broker, store)


@pytest.fixture(scope="session")
def worker() -> Iterator[WorkerProcess]:
    """One worker process shared by the tests that just need jobs to run (queues "default" and "test" only)."""
    with WorkerProcess(processes=1, threads=8, queues=["default", "test"]) as process:
        yield process


@pytest.fixture
def quiet_worker(worker: WorkerProcess) -> WorkerProcess:
    """The shared worker with its queues empty and at rest, and the store empty: for a test that counts what the worker
    finishes. Earlier tests of this process (the schema test sends hundreds of jobs) may leave jobs in its queues that
    it still runs, and records, meanwhile."""
    deadline = time.monotonic() + 30
    while True:
        empty("default")
        empty("test")
        isolation.flush_except_lock(redis_client)
        time.sleep(1.0)  # what the worker held finishes (or is retried) and is recorded, if anything was left
        if next(redis_client.scan_iter(match=keys.job("*"), count=1000), None) is None:
            return worker
        assert time.monotonic() < deadline, "the shared worker's queues did not come to rest in 30 s"


@pytest.fixture(scope="session")
def periodic_worker() -> Iterator[WorkerProcess]:
    """A worker for the test-only periodic jobs (queue "test-periodic"), with a 2 s misfire grace period."""
    env = {"SCHEDULE_MISFIRE_GRACE_S": "2"}
    modules = ["tests.support.periodic_actors"]
    with WorkerProcess(processes=1, threads=4, queues=["test-periodic"], env=env, modules=modules) as process:
        yield process


CHAOS_QUEUE = "chaos"  #: tests/support/chaos_actors.py's QUEUE (not imported here: that declares its actors)


@functools.cache
def _uses_chaos_queue(path: str) -> bool:
    return "chaos_actors" in Path(path).read_text()


@pytest.fixture(autouse=True)
def empty_chaos_queue(request: pytest.FixtureRequest) -> None:
    """Fault tests share the "chaos" queue of their run: a job one of them left behind (one that SIGKILLs its worker,
    a long tally) must not be taken by the next test's workers, which would then wait behind it or die of it."""
    path = getattr(request.module, "__file__", None)
    if path is None or not _uses_chaos_queue(path):
        return
    broker.declare_queue(CHAOS_QUEUE, ensure=True)
    purge_queues(CHAOS_QUEUE, dq_name(CHAOS_QUEUE))


def purge_queues(*names: str) -> None:
    for name in names:
        broker.channel.queue_purge(name)
