"""Idempotency-Key: the first job's id for 24 h, even when 50 identical requests race; another payload is 422."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from fastapi.testclient import TestClient

from service import keys
from service.broker import redis_client
from service.jobs import Jobs
from service.states import JobState
from tests.support.workers import WorkerProcess


def test_fifty_racing_identical_requests_get_one_job_that_runs_once(
    server: str, jobs: Jobs, worker: WorkerProcess
) -> None:
    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=server, timeout=20) as http:
            return http.post("/jobs/record_run", json={"key": "race"}, headers={"Idempotency-Key": "order-1234"})

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(post, range(50)))
    assert {r.status_code for r in responses} == {202}
    ids = {r.json()["jobId"] for r in responses}
    assert len(ids) == 1
    (job_id,) = ids
    assert all(r.headers["Location"] == f"/jobs/{job_id}" for r in responses)
    assert jobs.wait(job_id, timeout_s=15).state is JobState.COMPLETED
    assert jobs.store.count(actor="record_run") == 1
    assert redis_client.get("test:runs:race") == "1"


def test_the_same_key_again_returns_the_first_job_and_enqueues_nothing(client: TestClient, jobs: Jobs) -> None:
    headers = {"Idempotency-Key": "invoice-7"}
    first = client.post("/jobs/add?delay=60000", json={"a": 1, "b": 2}, headers=headers)
    again = client.post("/jobs/add?delay=60000", json={"b": 2, "a": 1}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == {"jobId": first.json()["jobId"], "status": "delayed"}
    assert jobs.store.count() == 1
    assert 86_000 < redis_client.ttl(keys.idempotency("add:invoice-7")) <= 86_400


def test_the_same_key_with_another_payload_is_422_naming_the_header(client: TestClient, jobs: Jobs) -> None:
    headers = {"Idempotency-Key": "invoice-8"}
    assert client.post("/jobs/add?delay=60000", json={"a": 1, "b": 2}, headers=headers).status_code == 202
    response = client.post("/jobs/add?delay=60000", json={"a": 1, "b": 3}, headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert jobs.store.count() == 1


def test_keys_belong_to_one_actor(client: TestClient, jobs: Jobs) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    one = client.post("/jobs/add?delay=60000", json={"a": 1, "b": 2}, headers=headers).json()["jobId"]
    other = client.post("/jobs/record_run?delay=60000", json={"key": "k"}, headers=headers).json()["jobId"]
    assert one != other
