"""DELETE /jobs/{jobId} and POST /jobs/{jobId}/retry: real cancellation, and a retry under the same id."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from service.bootstrap import redis_client
from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.support.api_actors import held_worker
from tests.support.workers import WorkerProcess


def wait_for_state(client: TestClient, job_id: str, state: str, timeout_s: float = 15) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        record: dict[str, object] = client.get(f"/jobs/{job_id}").json()
        if record.get("state") == state:
            return record
        assert time.monotonic() < deadline, f"job never reached {state}: {record}"
        time.sleep(0.05)


def test_a_cancelled_queued_job_never_runs(client: TestClient, jobs: Jobs, empty_held_queue: str) -> None:
    doomed = client.post("/jobs/held", json={"key": "cancel-queued"}).json()["jobId"]
    sentinel = client.post("/jobs/held", json={"key": "cancel-queued"}).json()["jobId"]
    response = client.delete(f"/jobs/{doomed}")
    assert response.status_code == 202
    assert response.json() == {"jobId": doomed, "status": "cancelled"}
    with held_worker():
        assert jobs.wait(sentinel, timeout_s=20).state is JobState.COMPLETED
    # One worker thread takes them in order: the cancelled one came first and was skipped.
    assert redis_client.lrange("test:order:cancel-queued", 0, -1) == [sentinel]
    record = jobs.get(doomed)
    assert record.state is JobState.CANCELLED
    assert record.startedAt is None and record.attempts == 0


def test_a_cancelled_delayed_job_never_runs(client: TestClient, jobs: Jobs, worker: WorkerProcess) -> None:
    doomed = client.post("/jobs/record_run?delay=700", json={"key": "cancel-delayed"}).json()["jobId"]
    assert client.delete(f"/jobs/{doomed}").json()["status"] == "cancelled"
    sentinel = client.post("/jobs/record_run?delay=1200", json={"key": "other"}).json()["jobId"]
    assert jobs.wait(sentinel, timeout_s=20).state is JobState.COMPLETED
    assert redis_client.get("test:runs:cancel-delayed") is None
    assert jobs.get(doomed).state is JobState.CANCELLED


def test_a_cancelled_active_job_stops_and_ends_cancelled(client: TestClient, jobs: Jobs, worker: WorkerProcess) -> None:
    job_id = client.post("/jobs/slow", json={"key": "cancel-active", "seconds": 20, "steps": 200}).json()["jobId"]
    wait_for_state(client, job_id, "active")
    asked = time.monotonic()
    response = client.delete(f"/jobs/{job_id}")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelling"
    record = wait_for_state(client, job_id, "cancelled", timeout_s=10)
    assert time.monotonic() - asked < 5, "the job should stop at its next progress report"
    assert isinstance(record["progress"], int) and record["progress"] < 100
    assert redis_client.get("test:completions:cancel-active") is None
    assert client.delete(f"/jobs/{job_id}").status_code == 409


def test_cancel_of_a_finished_job_is_409_and_of_an_unknown_job_404(
    client: TestClient, jobs: Jobs, worker: WorkerProcess
) -> None:
    job_id = client.post("/jobs/add", json={"a": 1, "b": 1}).json()["jobId"]
    jobs.wait(job_id, timeout_s=15)
    response = client.delete(f"/jobs/{job_id}")
    assert response.status_code == 409
    assert "completed" in response.json()["detail"]
    assert client.delete("/jobs/no-such-job").json() == {"detail": "Job not found"}
    assert client.delete("/jobs/no-such-job").status_code == 404


def test_a_failed_job_retried_runs_again_under_the_same_id_with_its_history(
    client: TestClient, jobs: Jobs, worker: WorkerProcess
) -> None:
    # Fails its first run and all three automatic retries, then succeeds on the fifth run.
    job_id = client.post("/jobs/flaky", json={"key": "retry-by-hand", "failures": 4}).json()["jobId"]
    failed = jobs.wait(job_id, timeout_s=20)
    assert failed.state is JobState.FAILED
    response = client.post(f"/jobs/{job_id}/retry")
    assert response.status_code == 202
    assert response.json() == {"jobId": job_id, "status": "queued"}
    assert response.headers["Location"] == f"/jobs/{job_id}"
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.COMPLETED
    assert record.result == 5
    states = [entry.state for entry in record.history]
    assert states.count(JobState.FAILED) == 1 and states[-1] is JobState.COMPLETED
    assert any(entry.note == "retried from failed" for entry in record.history)
    assert len([s for s in states if s is JobState.ACTIVE]) == 5


def test_retry_of_a_job_that_is_not_failed_or_cancelled_is_409_and_of_an_unknown_job_404(
    client: TestClient, jobs: Jobs, worker: WorkerProcess
) -> None:
    job_id = client.post("/jobs/add", json={"a": 1, "b": 1}).json()["jobId"]
    jobs.wait(job_id, timeout_s=15)
    response = client.post(f"/jobs/{job_id}/retry")
    assert response.status_code == 409
    assert "completed" in response.json()["detail"]
    assert client.post("/jobs/no-such-job/retry").status_code == 404


def test_a_cancelled_job_can_be_retried_and_then_runs(client: TestClient, jobs: Jobs, worker: WorkerProcess) -> None:
    job_id = client.post("/jobs/record_run?delay=60000", json={"key": "revived"}).json()["jobId"]
    client.delete(f"/jobs/{job_id}")
    assert client.post(f"/jobs/{job_id}/retry").status_code == 202
    assert jobs.wait(job_id, timeout_s=15).state is JobState.COMPLETED
    assert redis_client.get("test:runs:revived") == "1"
