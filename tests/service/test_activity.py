"""Throughput per minute and workers alive, as the dashboard reads them through the service layer."""

from __future__ import annotations

import time

from service.bootstrap import store
from service.domain.clock import now_ms
from service.domain.states import JobState
from service.ops.activity import Activity
from service.ops.jobs import Jobs
from tests.support import test_actors
from tests.support.workers import WorkerProcess


def finish(job_id: str, state: JobState, at_ms: int | None = None) -> None:
    created = {"jobId": job_id, "actor": "add", "queue": "test", "data": "{}", "createdMs": now_ms(), "createdAt": "x"}
    store.transition(job_id, JobState.QUEUED, create=created, at_ms=at_ms)
    store.transition(job_id, JobState.ACTIVE, at_ms=at_ms)
    store.transition(job_id, state, fields={"failedReason": "boom"} if state is JobState.FAILED else {}, at_ms=at_ms)


def test_completed_and_failed_jobs_are_counted_in_the_minute_they_finish() -> None:
    for i in range(3):
        finish(f"done-{i}", JobState.COMPLETED)
    finish("broken", JobState.FAILED)
    minutes = Activity(store).throughput(60)
    assert len(minutes) == 60
    assert (minutes[-1].completed, minutes[-1].failed) == (3, 1)
    assert sum(m.completed + m.failed for m in minutes[:-1]) == 0
    assert minutes[-1].minute_ms == now_ms() // 60_000 * 60_000


def test_a_job_finished_over_an_hour_ago_is_not_in_the_last_hour_and_its_counter_expires() -> None:
    finish("old", JobState.COMPLETED, at_ms=now_ms() - 61 * 60_000)
    assert sum(m.completed for m in Activity(store).throughput(60)) == 0
    assert sum(m.completed for m in Activity(store).throughput(62)) == 1
    counters = list(store.client.scan_iter("jobs:throughput:*"))
    assert counters and all(0 < store.client.ttl(k) <= 7200 for k in counters)


def test_cancelled_jobs_are_not_counted_as_throughput(jobs: Jobs) -> None:
    finish("stopped", JobState.CANCELLED)
    assert sum(m.completed + m.failed for m in Activity(store).throughput(60)) == 0


def test_a_real_worker_counts_its_finished_jobs(jobs: Jobs, quiet_worker: WorkerProcess) -> None:
    jobs.wait(test_actors.add.send(a=1, b=1).message_id, timeout_s=15)
    jobs.wait(test_actors.flaky.send(key="never", failures=99).message_id, timeout_s=20)
    minutes = Activity(store).throughput(2)
    assert sum(m.completed for m in minutes) == 1
    assert sum(m.failed for m in minutes) == 1


def test_each_worker_process_beats_and_is_gone_once_it_stops(jobs: Jobs, worker: WorkerProcess) -> None:
    with WorkerProcess(processes=2, threads=2, queues=["test-limited"]) as extra:
        # Redis was flushed as this test began; every process beats again within 3 s.
        deadline = time.monotonic() + 10
        while True:
            alive = Activity(store).workers()
            mine = [w for w in alive if w.pid in extra.child_pids()]
            shared = [w for w in alive if w.pid in worker.child_pids()]
            if (len(mine), len(shared)) == (2, 1) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(mine) == 2
        assert all(w.queues == ["test-limited"] and w.threads == 2 and w.busy == 0 for w in mine)
        assert len(shared) == 1 and "test" in shared[0].queues
    assert not [w for w in Activity(store).workers() if w.queues == ["test-limited"]]


def test_a_heartbeat_that_is_not_renewed_expires() -> None:
    store.beat("elsewhere:1", {"id": "elsewhere:1", "host": "elsewhere", "pid": 1}, ttl_s=0.3)
    assert "elsewhere" in [w.host for w in Activity(store).workers()]
    time.sleep(0.5)
    assert "elsewhere" not in [w.host for w in Activity(store).workers()]
