"""report_progress is cheap in a tight loop and tells a job it was cancelled."""

from __future__ import annotations

import pytest

from service.domain.context import JobContext, current_job
from service.domain.errors import JobCancelled
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.store.job_store import JobStore
from service.worker import progress


class CountingStore(JobStore):
    """The real store, counting how often progress reaches Redis."""

    writes = 0

    def report_progress(self, job_id: str, percent: int, message: str | None) -> tuple[bool, bool]:
        self.writes += 1
        return super().report_progress(job_id, percent, message)


def start_job(store: JobStore, job_id: str) -> None:
    create = {"jobId": job_id, "actor": "loop", "queue": "q", "data": "{}", "createdMs": 1, "createdAt": "x"}
    store.transition(job_id, JobState.ACTIVE, create=create)
    current_job.set(JobContext(job_id, "loop", "q", 1))


def test_a_hundred_thousand_progress_reports_make_only_a_few_redis_writes(jobs: Jobs) -> None:
    store = CountingStore(jobs.store.client)
    progress.bind_store(store)
    start_job(store, "tight")
    try:
        for i in range(100_000):
            progress.report_progress(i / 1000, "looping")
        progress.flush_progress()
    finally:
        current_job.set(None)
        progress.bind_store(jobs.store)
    assert store.writes < 50, store.writes
    record = store.get("tight")
    assert record is not None and record.progress == 99 and record.progressMessage == "looping"


def test_progress_raises_job_cancelled_once_cancellation_is_requested(jobs: Jobs) -> None:
    start_job(jobs.store, "to-cancel")
    try:
        assert jobs.cancel("to-cancel") == "cancelling"
        with pytest.raises(JobCancelled):
            progress.report_progress(100, "done?")
    finally:
        current_job.set(None)
