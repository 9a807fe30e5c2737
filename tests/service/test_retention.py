"""Completed and failed jobs are pruned by age and by count, without scanning every key."""

from __future__ import annotations

import pytest

from service.bootstrap import build_store
from service.domain.clock import now_ms
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.settings import Settings
from service.store import keys
from service.store.job_store import JobStore, Retention


def finish(store: JobStore, job_id: str, actor: str, state: JobState, at_ms: int | None = None) -> None:
    create = {"jobId": job_id, "actor": actor, "queue": "q", "data": "{}", "createdMs": 1, "createdAt": "x"}
    store.transition(job_id, JobState.ACTIVE, create=create, at_ms=at_ms)
    store.transition(job_id, state, at_ms=at_ms)


def test_completed_jobs_beyond_the_count_are_pruned_oldest_first(jobs: Jobs) -> None:
    store = JobStore(jobs.store.client, Retention(completed_count=5))
    for i in range(12):
        finish(store, f"c{i:02d}", "report", JobState.COMPLETED)
    left = {r.jobId for r in store.list(actor="report", limit=100).jobs}
    assert left == {f"c{i:02d}" for i in range(7, 12)}
    assert store.client.exists(keys.job("c00")) == 0
    assert store.count(actor="report", state=JobState.COMPLETED) == 5


def test_the_count_is_kept_per_actor(jobs: Jobs) -> None:
    store = JobStore(jobs.store.client, Retention(completed_count=3))
    for i in range(4):
        finish(store, f"a{i}", "alpha", JobState.COMPLETED)
        finish(store, f"b{i}", "beta", JobState.COMPLETED)
    assert store.count(actor="alpha") == 3
    assert store.count(actor="beta") == 3


def test_jobs_older_than_their_retention_are_pruned_by_age(jobs: Jobs) -> None:
    store = JobStore(jobs.store.client, Retention(completed_s=3600, failed_s=7200))
    two_hours_ago = now_ms() - 2 * 3600 * 1000 - 1000
    finish(store, "old-done", "sync", JobState.COMPLETED, at_ms=two_hours_ago)
    finish(store, "old-failed", "sync", JobState.FAILED, at_ms=two_hours_ago)
    assert store.prune("sync") == 2
    assert store.get("old-done") is None
    assert store.get("old-failed") is None
    finish(store, "new-done", "sync", JobState.COMPLETED)
    assert store.prune("sync") == 0
    assert store.get("new-done") is not None
    assert store.count() == 1  # the indexes were cleaned with the records


def test_failed_jobs_are_kept_longer_than_completed_ones(jobs: Jobs) -> None:
    store = JobStore(jobs.store.client, Retention(completed_s=3600, failed_s=7 * 86400))
    ninety_minutes_ago = now_ms() - 90 * 60 * 1000
    finish(store, "done", "sync", JobState.COMPLETED, at_ms=ninety_minutes_ago)
    finish(store, "failed", "sync", JobState.FAILED, at_ms=ninety_minutes_ago)
    store.prune("sync")
    assert store.get("done") is None
    assert store.get("failed") is not None


def test_memory_stays_bounded_however_many_jobs_pass_through(jobs: Jobs) -> None:
    store = JobStore(jobs.store.client, Retention(completed_count=50))
    for i in range(400):
        finish(store, f"m{i}", "flood", JobState.COMPLETED)
    assert store.count() == 50
    job_keys = list(store.client.scan_iter(match=f"{keys.PREFIX}job:*", count=1000))
    assert len(job_keys) == 50


def test_one_pruning_step_removes_at_most_200_jobs_and_the_next_step_the_rest(jobs: Jobs) -> None:
    keep_all = JobStore(jobs.store.client, Retention(completed_count=1_000_000))
    two_hours_ago = now_ms() - 2 * 3600 * 1000
    for i in range(320):
        finish(keep_all, f"old{i:03d}", "bulk", JobState.COMPLETED, at_ms=two_hours_ago + i)
    assert keep_all.count(actor="bulk") == 320  # the situation: 320 jobs past their retention
    by_age = JobStore(jobs.store.client, Retention(completed_s=3600, completed_count=1_000_000))
    assert by_age.prune("bulk") == 200
    assert by_age.count(actor="bulk") == 120
    assert by_age.get("old199") is None and by_age.get("old200") is not None  # oldest first
    assert by_age.prune("bulk") == 120
    assert by_age.prune("bulk") == 0
    assert by_age.count() == 0


def test_a_pruning_step_by_count_also_stops_at_200_and_keeps_the_newest(jobs: Jobs) -> None:
    keep_all = JobStore(jobs.store.client, Retention(completed_count=1_000_000))
    for i in range(320):
        finish(keep_all, f"n{i:03d}", "bulk", JobState.COMPLETED)
    by_count = JobStore(jobs.store.client, Retention(completed_count=10))
    # A job finishing prunes its actor in the same script: one step, so 200 of the 311 extra go.
    finish(by_count, "n320", "bulk", JobState.COMPLETED)
    assert by_count.count(actor="bulk") == 321 - 200
    assert by_count.prune("bulk") == 111
    left = {r.jobId for r in by_count.list(actor="bulk", limit=100).jobs}
    assert left == {f"n{i:03d}" for i in range(311, 321)}


def test_failed_jobs_beyond_job_retention_failed_count_are_pruned_oldest_first(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOB_RETENTION_FAILED_COUNT", "5")
    store = build_store(Settings(), jobs.store.client)
    for i in range(12):
        finish(store, f"f{i:02d}", "report", JobState.FAILED)
        finish(store, f"c{i:02d}", "report", JobState.COMPLETED)
    assert store.count(actor="report", state=JobState.FAILED) == 5
    left = {r.jobId for r in store.list(actor="report", state=JobState.FAILED, limit=100).jobs}
    assert left == {f"f{i:02d}" for i in range(7, 12)}
    assert store.client.exists(keys.job("f00")) == 0
    # The failed count leaves completed jobs alone: they have their own (JOB_RETENTION_COMPLETED_COUNT).
    assert store.count(actor="report", state=JobState.COMPLETED) == 12


def test_cancelled_jobs_are_kept_as_long_as_failed_ones_and_pruned_by_the_failed_count(jobs: Jobs) -> None:
    by_age = JobStore(jobs.store.client, Retention(completed_s=3600, failed_s=7200))
    ninety_minutes_ago = now_ms() - 90 * 60 * 1000
    three_hours_ago = now_ms() - 3 * 3600 * 1000
    finish(by_age, "recent-cancel", "sync", JobState.CANCELLED, at_ms=ninety_minutes_ago)
    finish(by_age, "old-cancel", "sync", JobState.CANCELLED, at_ms=three_hours_ago)
    finish(by_age, "recent-done", "sync", JobState.COMPLETED, at_ms=ninety_minutes_ago)
    assert by_age.prune("sync") == 2
    assert by_age.get("recent-cancel") is not None  # past the completed retention, within the failed one
    assert by_age.get("old-cancel") is None and by_age.get("recent-done") is None

    # Cancelled before they ran (the API's cancel): pruned in the same script, to JOB_RETENTION_FAILED_COUNT.
    by_count = JobStore(jobs.store.client, Retention(failed_count=3))
    create = {"actor": "mail", "queue": "q", "data": "{}", "createdMs": 1, "createdAt": "x"}
    for i in range(5):
        by_count.transition(f"w{i}", JobState.QUEUED, create={**create, "jobId": f"w{i}"})
        finish(by_count, f"f{i}", "mail", JobState.FAILED)
    for i in range(5):
        assert by_count.cancel(f"w{i}") == "cancelled"
    left = {r.jobId for r in by_count.list(actor="mail", state=JobState.CANCELLED, limit=100).jobs}
    assert left == {"w2", "w3", "w4"}
    # The count applies to each state on its own: 3 cancelled do not push out the 3 failed.
    assert by_count.count(actor="mail", state=JobState.FAILED) == 3
