"""cleanup_jobs: retention, stale index entries, jobs left active by a killed worker, and two runs at once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from actors.cleanup import cleanup_jobs
from service.domain.clock import now_ms
from service.domain.states import JobState
from service.kits import maintenance
from service.ops.jobs import Jobs
from service.store import keys, locks
from tests.actors.conftest import QUEUES, PrivateLane
from tests.support import test_actors
from tests.support.seed import seed
from tests.support.workers import WorkerProcess

DAY_MS = 86_400_000
LEASE_MS = 1500


@pytest.fixture(scope="module")
def cleanup_worker(lane: PrivateLane, job_env: dict[str, str]) -> Iterator[WorkerProcess]:
    with lane.worker({**job_env, "JOB_LEASE_MS": str(LEASE_MS)}, queues=[*QUEUES, test_actors.QUEUE]) as process:
        yield process


def test_retention_removes_old_finished_jobs_and_keeps_the_rest(
    jobs: Jobs, lane: PrivateLane, cleanup_worker: WorkerProcess
) -> None:
    now = now_ms()
    # Fresh first: each transition prunes by its own clock, which would otherwise do the cleanup's work.
    fresh = seed(jobs.store, "alpha", created=now - 1000, state="completed")
    old_done = [seed(jobs.store, "alpha", created=now - 2 * DAY_MS, state="completed") for _ in range(3)]
    old_failed = seed(jobs.store, "alpha", created=now - 8 * DAY_MS, state="failed", reason="x")
    week_failed = seed(jobs.store, "beta", created=now - 2 * DAY_MS, state="failed", reason="x")  # kept 7 days
    waiting = seed(jobs.store, "beta", created=now - 9 * DAY_MS, state="queued")  # never pruned: not finished
    job_id = lane.send(cleanup_jobs)
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.COMPLETED, record.failedReason
    assert record.result["ran"] is True
    assert record.result["pruned"] == 4
    for gone in [*old_done, old_failed]:
        assert jobs.store.get(gone) is None
        assert jobs.store.client.zscore(keys.index("alpha"), gone) is None
    for kept in (week_failed, fresh, waiting):
        assert jobs.store.get(kept) is not None
    again = jobs.wait(lane.send(cleanup_jobs), timeout_s=20)
    assert again.result["pruned"] == 0  # idempotent: nothing left to do


def test_index_entries_without_a_record_are_swept(jobs: Jobs) -> None:
    real = seed(jobs.store, "alpha", created=now_ms(), state="completed")
    client = jobs.store.client
    for index in (keys.index(), keys.index("alpha"), keys.index(None, "completed"), keys.index("alpha", "failed")):
        client.zadd(index, {"ghost-1": 1, "ghost-2": 2})
    removed = maintenance.sweep_indexes(jobs.store, deadline=time.monotonic() + 30)
    assert removed == 8
    assert client.zscore(keys.index("alpha"), real) is not None
    assert client.zscore(keys.index("alpha"), "ghost-1") is None


def test_a_job_left_active_by_a_killed_worker_is_requeued_then_run_again_never_failed(
    jobs: Jobs, lane: PrivateLane, job_env: dict[str, str], cleanup_worker: WorkerProcess
) -> None:
    cleanup_worker.stop()  # the job must be on the worker this test kills
    env = {**job_env, "JOB_LEASE_MS": str(LEASE_MS)}
    try:
        with lane.worker(env, queues=[test_actors.QUEUE]) as doomed:
            job_id = lane.send(test_actors.slow, key="lost", seconds=3, steps=6)
            deadline = time.monotonic() + 15
            while jobs.get(job_id).state is not JobState.ACTIVE:
                assert time.monotonic() < deadline, "the job never started"
                time.sleep(0.05)
            time.sleep(LEASE_MS * 1.5 / 1000)  # a live worker renews its lease: the job must be left alone
            # The situation: the job still runs, started over a lease ago, and its worker renewed the lease.
            assert jobs.get(job_id).state is JobState.ACTIVE
            assert jobs.store.client.pttl(keys.lease(job_id)) > 0
            spared = maintenance.clean(jobs.store, lease_ms=LEASE_MS, budget_s=10, lock_ttl_ms=10_000)
            assert spared.requeued == []
            assert jobs.get(job_id).state is JobState.ACTIVE
            doomed.kill()
        time.sleep(LEASE_MS * 1.5 / 1000)  # the lease lapses; nobody renews it
        assert jobs.store.client.exists(keys.lease(job_id)) == 0
        repaired = maintenance.clean(jobs.store, lease_ms=LEASE_MS, budget_s=10, lock_ttl_ms=10_000)
        assert repaired.requeued == [job_id]
        record = jobs.get(job_id)
        assert record.state is JobState.QUEUED
        assert record.history[-1].note == "worker lost while running; waiting for RabbitMQ to redeliver"
    finally:
        cleanup_worker.start()  # RabbitMQ redelivers the unacknowledged message to this one
    record = jobs.wait(job_id, timeout_s=30)
    assert record.state is JobState.COMPLETED
    assert record.attempts == 2
    assert JobState.FAILED not in [h.state for h in record.history]
    assert jobs.store.client.get("test:completions:lost") == "1"


def test_a_second_cleanup_while_one_runs_does_nothing_and_says_so(
    jobs: Jobs, lane: PrivateLane, cleanup_worker: WorkerProcess
) -> None:
    seed(jobs.store, "alpha", created=now_ms() - 2 * DAY_MS, state="completed")
    with locks.exclusive(jobs.store.client, "cleanup", 30_000) as held:
        assert held
        record = jobs.wait(lane.send(cleanup_jobs), timeout_s=20)
        assert record.state is JobState.COMPLETED
        assert record.result["ran"] is False
        assert record.result["pruned"] == 0
        assert "another cleanup is running" in record.result["note"]
    after = jobs.wait(lane.send(cleanup_jobs), timeout_s=20)
    assert after.result["ran"] is True
    assert after.result["pruned"] == 1


def test_a_wrong_payload_from_a_foreign_client_fails_without_retries_naming_the_fields(
    jobs: Jobs, lane: PrivateLane, cleanup_worker: WorkerProcess
) -> None:
    job_id = lane.send_raw("cleanup_jobs", "maintenance", {"budget_s": "soon", "everything": True})
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.FAILED
    assert record.attempts == 1
    reason = record.failedReason or ""
    assert "budget_s: Input should be a valid number" in reason
    assert "everything: Extra inputs are not permitted" in reason
