"""Busy: what every worker thread runs now (job, actor, start, elapsed, progress), from the workers' heartbeats,
through the service layer and GET /workers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.domain.states import JobState
from service.ops.activity import Activity, RunningJob
from service.ops.jobs import Jobs
from service.web import app
from tests.support import log_actors
from tests.support.workers import WorkerProcess


@pytest.fixture(scope="module")
def busy_worker() -> Iterator[WorkerProcess]:
    with WorkerProcess(threads=3, queues=[log_actors.QUEUE], modules=["tests.support.log_actors"]) as process:
        yield process


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def running(activity: Activity, job_id: str) -> RunningJob | None:
    found = [job for worker in activity.workers() for job in worker.running if job.job_id == job_id]
    return found[0] if found else None


def wait_for(check: Any, what: str, timeout_s: float = 10) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what} within {timeout_s} s"
        time.sleep(0.05)
    return value


def test_a_running_job_shows_with_its_thread_elapsed_time_and_progress_and_leaves_when_done(
    jobs: Jobs, busy_worker: WorkerProcess
) -> None:
    activity = Activity(jobs.store)
    job_id = jobs.enqueue("chatty", {"lines": 10, "seconds": 3, "text": "busy"}).job_id
    first = wait_for(lambda: running(activity, job_id), "the job shown running")
    assert first.actor == "chatty" and first.queue == log_actors.QUEUE and 1 <= first.thread <= 3
    assert first.started_at.endswith("Z")
    later = wait_for(lambda: (r := running(activity, job_id)) and r.progress >= 30 and r, "progress shown")
    assert later.elapsed_ms > first.elapsed_ms and later.elapsed_ms >= 800
    assert later.progress_message and later.progress_message.startswith("line ")
    jobs.wait(job_id, timeout_s=15)
    assert running(activity, job_id) is None  # at once: a job whose record is final is not shown
    # Only this test's worker: the session's shared worker (8 threads) may beat in the same Redis database.
    mine = set(busy_worker.child_pids())
    worker = wait_for(
        lambda: [w for w in activity.workers() if w.pid in mine and w.busy == 0], "the beat without the job"
    )[0]
    assert worker.running == [] and worker.threads == 3


def test_a_job_is_shown_within_half_a_second_of_its_start(jobs: Jobs, busy_worker: WorkerProcess) -> None:
    """Its worker beats at once when a job starts (not only every 3 s)."""
    activity = Activity(jobs.store)
    job_id = jobs.enqueue("chatty", {"lines": 2, "seconds": 2}).job_id
    wait_for(lambda: jobs.get(job_id).state is JobState.ACTIVE, "the job active", 10)
    started = time.monotonic()
    wait_for(lambda: running(activity, job_id), "the job shown running", 2)
    assert time.monotonic() - started < 0.5
    jobs.wait(job_id, timeout_s=15)


def test_get_workers_lists_each_worker_with_what_each_thread_runs(
    jobs: Jobs, busy_worker: WorkerProcess, client: TestClient
) -> None:
    job_id = jobs.enqueue("chatty", {"lines": 4, "seconds": 2}).job_id

    def shown() -> dict[str, Any] | None:
        body = client.get("/workers").json()
        return next((job for worker in body for job in worker["running"] if job["jobId"] == job_id), None)

    job = wait_for(shown, "the job in GET /workers")
    assert set(job) == {"jobId", "actor", "queue", "thread", "startedAt", "elapsedMs", "progress", "progressMessage"}
    assert job["actor"] == "chatty"
    worker = next(w for w in client.get("/workers").json() if w["pid"] in busy_worker.child_pids())
    assert worker["threads"] == 3 and worker["queues"] == [log_actors.QUEUE]
    assert {"id", "host", "busy", "startedAt", "beatAt", "running"} <= set(worker)
    jobs.wait(job_id, timeout_s=15)
    assert shown() is None
