"""Completed and failed jobs are pruned by age and by count, without scanning every key."""

from __future__ import annotations

from service import keys
from service.clock import now_ms
from service.jobs import Jobs
from service.states import JobState
from service.store import JobStore, Retention


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
