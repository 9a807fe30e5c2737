"""Fair dispatch with two worker processes: a backlog of one key does not hold another key's jobs, a high job still
overtakes its key's backlog, and jobs without a key still run. FAIR_QUEUES=fair-* for the tests.

The queue is paused while a test sends (service/ops/queues.py), so a backlog is whole when the other key's jobs are
sent: on a loaded machine sending takes seconds, and the workers would be well into the backlog by then."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from service.bootstrap import services
from service.domain.states import Priority
from service.ops.jobs import Jobs
from tests.support.fair_actors import FAIR_QUEUE, Run, fair_tenant_job, runs
from tests.support.graveyard import empty
from tests.support.polling import wait_for
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.slow

BACKLOG = 1000
JOB_MS = 20
#: Workers read the pause flags twice a second.
PAUSE_SEEN_S = 1.0


@pytest.fixture(autouse=True)
def empty_queue() -> Iterator[None]:
    empty(FAIR_QUEUE)
    yield
    empty(FAIR_QUEUE)


@pytest.fixture(scope="module")
def workers() -> Iterator[WorkerProcess]:
    with WorkerProcess(processes=2, threads=4, queues=[FAIR_QUEUE], modules=["tests.support.fair_actors"]) as process:
        yield process


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """The queue paused while the block sends; resumed after it, even when it fails."""
    queues = services().queues
    queues.pause(FAIR_QUEUE)
    time.sleep(PAUSE_SEEN_S)
    try:
        yield
    finally:
        queues.resume(FAIR_QUEUE)


def send_backlog(jobs: Jobs, tenant: str, count: int, **payload: object) -> None:
    for start in range(0, count, 250):
        batch = [{"tenant": tenant, "n": n, "sleep_ms": JOB_MS, "sent_at": time.time(), **payload}
                 for n in range(start, min(start + 250, count))]  # fmt: skip
        jobs.enqueue_batch(fair_tenant_job.actor_name, batch)


def done(tenant: str, finished: list[Run]) -> int:
    return sum(1 for run in finished if run.tenant == tenant)


def test_a_backlog_of_one_key_does_not_hold_another_keys_jobs(workers: WorkerProcess, jobs: Jobs) -> None:
    with paused():
        send_backlog(jobs, "big", BACKLOG)
        send_backlog(jobs, "small", 30)
    wait_for(lambda: done("small", runs(FAIR_QUEUE)) == 30, "the small key's jobs", timeout_s=60, every_s=0.02)
    finished = runs(FAIR_QUEUE)
    assert done("big", finished) < BACKLOG / 5, f"{done('big', finished)} of the backlog ran first"
    assert max(run.wait_s for run in finished if run.tenant == "small") < 5


def test_a_high_job_overtakes_its_keys_backlog_and_a_job_without_key_runs_meanwhile(
    workers: WorkerProcess, jobs: Jobs
) -> None:
    with paused():
        send_backlog(jobs, "big", BACKLOG)
        jobs.enqueue_batch(
            fair_tenant_job.actor_name,
            [{"tenant": "big", "n": -n, "sent_at": time.time()} for n in range(1, 6)],
            priority=Priority.HIGH,
        )
        for n in range(5):
            jobs.enqueue(fair_tenant_job.actor_name, {"n": 10_000 + n, "sent_at": time.time()})  # no key
    wait_for(
        lambda: sum(1 for run in runs(FAIR_QUEUE) if run.n < 0 or run.n >= 10_000) == 10,
        "the high and unkeyed",
        timeout_s=60,
        every_s=0.02,
    )
    finished = runs(FAIR_QUEUE)
    assert done("big", finished) - 5 < BACKLOG / 5, f"{done('big', finished)} of the backlog ran first"
