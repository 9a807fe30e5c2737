"""A worker cut off from Redis stops its job before its lease can lapse, so the copy that takes over never runs
alongside it; a job that finished in time is not failed by its time limit while its outcome is being recorded."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

import pytest

from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.store import keys
from tests.reliability.harness import REPORTS, FaultReport, wait_for, worker_env
from tests.support.fencing_actors import QUEUE, events, fenced_work
from tests.support.proxy import FaultProxy
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.reliability]

LEASE_MS = 3000


@contextlib.contextmanager
def partitionable_worker(**env: str) -> Iterator[tuple[WorkerProcess, FaultProxy, FaultProxy]]:
    """A worker whose Redis and RabbitMQ connections each run through a proxy of their own."""
    with FaultProxy(6379, name="redis") as redis_proxy, FaultProxy(5672, name="rabbit") as rabbit_proxy:
        worker = WorkerProcess(
            threads=1,
            queues=[QUEUE],
            modules=["tests.support.fencing_actors"],
            env={**worker_env(rabbit=rabbit_proxy, redis=redis_proxy), "JOB_LEASE_MS": str(LEASE_MS), **env},
        )
        try:
            yield worker.start(timeout=60), redis_proxy, rabbit_proxy
        finally:
            worker.kill()


def _first_start(run: str) -> tuple[int, float] | None:
    return next(((pid, at) for what, pid, at in events(run) if what == "start"), None)


def test_a_worker_cut_off_from_redis_stops_its_job_before_the_lease_lapses_and_the_copy_runs_it_once(
    jobs: Jobs,
) -> None:
    run = uuid.uuid4().hex[:8]
    with partitionable_worker() as one, partitionable_worker() as two:
        message = fenced_work.send_with_options(kwargs={"run": run, "ms": 4000}, time_limit=60_000)
        assert wait_for(lambda: _first_start(run) is not None, timeout=20) is not None
        first = _first_start(run)
        assert first is not None
        original, copy_side = (one, two) if first[0] in one[0].child_pids() else (two, one)
        assert first[0] in original[0].child_pids()

        # The original's worker loses Redis and RabbitMQ: RabbitMQ hands the message to the other worker at once.
        original[1].down()
        original[2].down()
        cut_at = time.time()
        record = jobs.wait(message.message_id, timeout_s=30)
        assert record.state is JobState.COMPLETED, record

        # Its Redis comes back: the attempt it gave up is given back, so the takeover is not a worker's death.
        original[1].up()
        restarts = lambda: jobs.store.client.hget(keys.job(message.message_id), "restarts")  # noqa: E731
        given_back = wait_for(lambda: restarts() == "0", timeout=10)
        log = original[0].output()
        copy_pids = copy_side[0].child_pids()

    seen = events(run)
    stops = [at for what, pid, at in seen if what == "stopped" and pid == first[0]]
    copy_starts = [at for what, pid, at in seen if what == "start" and pid in copy_pids]
    effects = [(pid, at) for what, pid, at in seen if what == "effect"]
    report = FaultReport(
        f"a worker cut off from Redis and RabbitMQ mid-job (lease {LEASE_MS} ms)",
        "stopped before its lease lapsed; the copy runs it once, after",
        sent=1,
        completed=int(record.state is JobState.COMPLETED),
        run_twice=max(0, len(effects) - 1),
    )
    if stops and copy_starts:
        report.recovery_s = copy_starts[0] - cut_at
        report.notes.append(f"original stopped {stops[0] - cut_at:.2f} s after the cut, the copy started after "
                            f"{copy_starts[0] - cut_at:.2f} s")  # fmt: skip
    REPORTS.append(report)
    assert len(copy_starts) == 1, seen  # the situation was reached: a copy took the job over
    assert len(effects) == 1 and effects[0][0] in copy_pids, seen
    assert len(stops) == 1 and stops[0] - cut_at < LEASE_MS / 1000, (seen, cut_at)
    assert stops[0] < copy_starts[0], seen  # never alongside
    assert "before the lease can lapse" in log, log[-3000:]
    history = [entry.state for entry in record.history]
    assert history.count(JobState.COMPLETED) == 1 and record.attempts == 2, record.history
    assert given_back is not None, restarts()


def test_a_job_that_finished_within_its_time_limit_is_completed_even_when_recording_it_takes_longer(
    jobs: Jobs,
) -> None:
    run = uuid.uuid4().hex[:8]
    with partitionable_worker(JOB_LEASE_MS="30000") as (worker, redis_proxy, _):
        message = fenced_work.send(run=run, ms=700)  # its time limit is 1.5 s
        assert wait_for(lambda: _first_start(run) is not None, timeout=20) is not None
        redis_proxy.down()  # the outcome can only be written once Redis is back, 3 s later
        assert wait_for(lambda: any(what == "effect" for what, _, _ in events(run)), timeout=5) is not None
        time.sleep(3.0)
        redis_proxy.up()
        record = jobs.wait(message.message_id, timeout_s=30)
        time.sleep(0.5)  # a retry (there must be none) would be under way by now
        log = worker.output()
    assert "job store unreachable" in log  # the situation was reached: the write waited for Redis
    assert record.state is JobState.COMPLETED and record.attempts == 1, (record.failedReason, log[-3000:])
    assert [what for what, _, _ in events(run)] == ["start", "effect"]


def test_a_worker_whose_lease_another_attempt_holds_says_so_stops_the_job_and_the_holder_runs_it(jobs: Jobs) -> None:
    run = uuid.uuid4().hex[:8]
    with partitionable_worker() as (worker, _, _):
        message = fenced_work.send_with_options(kwargs={"run": run, "ms": 3000}, time_limit=60_000)
        assert wait_for(lambda: _first_start(run) is not None, timeout=20) is not None
        # Another attempt takes the job over under its own token (as after a lease that lapsed unseen).
        client, job_id = jobs.store.client, message.message_id
        client.hset(keys.job(job_id), "attempts", 2)
        client.set(keys.lease(job_id), "elsewhere:1/2", px=LEASE_MS)
        record = jobs.wait(job_id, timeout_s=30)
        log = worker.output()
    seen = [what for what, _, _ in events(run)]
    assert f"job {job_id} lost its lease" in log, log[-3000:]
    assert seen == ["start", "stopped", "start", "effect"], seen  # stopped, then run once its lease was free
    assert record.state is JobState.COMPLETED and record.attempts == 3, record
