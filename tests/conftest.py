"""Every test run talks to the real RabbitMQ and Redis, in a vhost and a database of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import isolation

# Before anything imports `service`: settings are read once, at import.
_VHOST, _DB = isolation.isolate()
os.environ.setdefault("LOG_FORMAT", "console")
os.environ.setdefault("JOB_RETRY_DELAYS_MS", "100,200,300")
os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,::1,testserver")  # TestClient sends Host: testserver
os.environ.setdefault("WORKER_METRICS_PORT", "0")  # test workers serve metrics only when a test asks, on a free port

from service.broker import broker, redis_client, store  # noqa: E402
from service.jobs import Jobs  # noqa: E402
from tests.support import test_actors  # noqa: E402,F401
from tests.support.workers import WorkerProcess  # noqa: E402


def pytest_unconfigure(config: pytest.Config) -> None:
    isolation.delete_vhost(_VHOST)
    isolation.release_redis_db(_DB)


@pytest.fixture(autouse=True)
def clean_redis() -> Iterator[None]:
    isolation.flush_except_lock(redis_client)
    yield


@pytest.fixture
def jobs() -> Jobs:
    return Jobs(broker, store)


@pytest.fixture(scope="session")
def worker() -> Iterator[WorkerProcess]:
    """One worker process shared by the tests that just need jobs to run (queues "default" and "test" only)."""
    with WorkerProcess(processes=1, threads=8, queues=["default", "test"]) as process:
        yield process


@pytest.fixture(scope="session")
def periodic_worker() -> Iterator[WorkerProcess]:
    """A worker for the test-only periodic jobs (queue "test-periodic"), with a 2 s misfire grace period."""
    env = {"SCHEDULE_MISFIRE_GRACE_S": "2"}
    modules = ["tests.support.periodic_actors"]
    with WorkerProcess(processes=1, threads=4, queues=["test-periodic"], env=env, modules=modules) as process:
        yield process


def purge_queues(*names: str) -> None:
    for name in names:
        broker.channel.queue_purge(name)
