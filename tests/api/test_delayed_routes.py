"""GET /queues/{name}/delayed and its run-now and cancel routes, on the real RabbitMQ, Redis and a worker."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi.testclient import TestClient

from service.bootstrap import settings
from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.support.workers import WorkerProcess

HOUR_MS = 3_600_000
TOKEN = "delayed-test-token"
CROSS_SITE = {"detail": "cross-site request refused: send it from this service's own pages"}
CHANGES = ("/queues/test/delayed/run-now", "/queues/test/delayed/cancel")


def delay(jobs: Jobs, key: str, ms: int = HOUR_MS) -> str:
    return jobs.enqueue("record_run", {"key": key}, delay_ms=ms).job_id


def test_the_list_shows_each_delayed_job_with_when_it_is_due_and_run_now_runs_the_chosen_one(
    client: TestClient, jobs: Jobs, worker: WorkerProcess
) -> None:
    key = f"api-{uuid.uuid4()}"
    soon, later = delay(jobs, key, HOUR_MS), delay(jobs, key, 2 * HOUR_MS)
    listed = client.get("/queues/test/delayed")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert (body["queue"], body["total"]) == ("test", 2)
    assert [j["jobId"] for j in body["jobs"]] == [soon, later]
    assert set(body["jobs"][0]) == {"jobId", "actor", "dueAt", "createdAt", "run", "retry", "attempts", "lastError"}
    assert body["jobs"][0]["dueAt"] < body["jobs"][1]["dueAt"]
    assert client.get("/queues/test/delayed", params={"limit": 1, "offset": 1}).json()["jobs"][0]["jobId"] == later

    ran = client.post("/queues/test/delayed/run-now", json={"jobIds": [soon]})
    assert (ran.status_code, ran.json()) == (202, {"queue": "test", "count": 1, "skipped": 0})
    assert jobs.wait(soon, timeout_s=10).state is JobState.COMPLETED
    assert jobs.get(later).state is JobState.DELAYED


def test_cancel_without_a_body_cancels_every_delayed_job_of_the_queue(client: TestClient, jobs: Jobs) -> None:
    ids = [delay(jobs, f"cancel-all-{i}") for i in range(3)]
    one = client.post("/queues/test/delayed/cancel", json={"jobIds": [ids[0]]})
    assert (one.status_code, one.json()) == (202, {"queue": "test", "count": 1, "skipped": 0})
    rest = client.post("/queues/test/delayed/cancel")
    assert (rest.status_code, rest.json()) == (202, {"queue": "test", "count": 2, "skipped": 0})
    assert {jobs.get(i).state for i in ids} == {JobState.CANCELLED}
    assert client.get("/queues/test/delayed").json()["total"] == 0


def test_an_unknown_queue_is_a_404_for_the_list_and_both_actions(client: TestClient) -> None:
    answers = [
        client.get("/queues/no-such-queue/delayed"),
        client.post("/queues/no-such-queue/delayed/run-now"),
        client.post("/queues/no-such-queue/delayed/cancel", json={"jobIds": ["x"]}),
    ]
    for answer in answers:
        assert (answer.status_code, answer.json()) == (404, {"detail": "Unknown queue: no-such-queue"})


def test_run_now_and_cancel_refuse_a_missing_or_wrong_token_and_take_the_right_one(
    monkeypatch: pytest.MonkeyPatch, client: TestClient, jobs: Jobs
) -> None:
    monkeypatch.setattr(settings, "api_token", TOKEN)
    job_id = delay(jobs, "guarded")
    for path in CHANGES:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = client.post(path, json={"jobIds": [job_id]}, headers=headers)
            assert refused.status_code == 401, (path, headers, refused.text)
    assert jobs.get(job_id).state is JobState.DELAYED
    assert client.get("/queues/test/delayed").status_code == 200  # reading needs no token
    let_in = client.post(CHANGES[1], json={"jobIds": [job_id]}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert (let_in.status_code, let_in.json()["count"]) == (202, 1)


def test_run_now_and_cancel_refuse_a_request_from_another_site(server: str, jobs: Jobs) -> None:
    job_id = delay(jobs, "forged")
    for path in CHANGES:
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            response = httpx.post(f"{server}{path}", json={"jobIds": [job_id]}, headers=headers, timeout=5)
            assert (response.status_code, response.json()) == (403, CROSS_SITE), (path, headers)
    assert jobs.get(job_id).state is JobState.DELAYED


def test_more_job_ids_than_allowed_or_a_bad_limit_is_a_422(client: TestClient) -> None:
    too_many = client.post("/queues/test/delayed/run-now", json={"jobIds": [str(i) for i in range(1001)]})
    assert too_many.status_code == 422
    assert client.get("/queues/test/delayed", params={"limit": 0}).status_code == 422
