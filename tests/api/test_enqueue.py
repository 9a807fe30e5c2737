"""POST /jobs/{actor} and /batch, GET /jobs/{jobId}: accepted jobs run, and every bad input is named."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.support import api_actors
from tests.support.workers import WorkerProcess


def test_a_posted_job_is_accepted_with_its_location_and_runs_to_completion(
    client: TestClient, jobs: Jobs, worker: WorkerProcess
) -> None:
    response = client.post("/jobs/add", json={"a": 2, "b": 3})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert response.headers["Location"] == f"/jobs/{body['jobId']}"
    jobs.wait(body["jobId"], timeout_s=15)
    record = client.get(response.headers["Location"])
    assert record.status_code == 200
    assert record.json()["state"] == "completed"
    assert record.json()["result"] == 5
    assert record.json()["data"] == {"a": 2, "b": 3}
    assert record.json()["jobId"] == body["jobId"]


def test_an_unknown_actor_is_404_and_nothing_is_recorded(client: TestClient, jobs: Jobs) -> None:
    response = client.post("/jobs/no_such_actor", json={})
    assert response.status_code == 404
    assert response.json() == {"detail": "Unknown actor: no_such_actor"}
    assert jobs.store.count() == 0


def test_an_invalid_payload_is_422_naming_each_bad_field(client: TestClient, jobs: Jobs) -> None:
    response = client.post("/jobs/add", json={"a": "not a number"})
    assert response.status_code == 422
    problems = {tuple(item["loc"]): item["msg"] for item in response.json()["detail"]}
    assert ("body", "a") in problems and "integer" in problems[("body", "a")]
    assert ("body", "b") in problems and problems[("body", "b")] == "Field required"
    assert jobs.store.count() == 0


def test_a_body_that_is_not_json_is_422(client: TestClient) -> None:
    response = client.post("/jobs/add", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_a_json_body_that_is_not_an_object_is_422(client: TestClient) -> None:
    for body in ([1, 2], "text", 42, None):
        response = client.post("/jobs/add", content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"] == ["body"]


def test_a_body_over_the_size_limit_is_413_before_it_is_parsed(client: TestClient, jobs: Jobs) -> None:
    big = b'{"a": 1, "b": 2, "pad": "' + b"x" * 262_144 + b'"}'
    response = client.post("/jobs/add", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "MAX_PAYLOAD_BYTES" in response.json()["detail"]
    # Not even valid JSON: a parser never saw it, or this would be 422.
    response = client.post("/jobs/add", content=b"\xff" * 300_000, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert jobs.store.count() == 0


def test_a_chunked_body_over_the_size_limit_is_413(client: TestClient) -> None:
    def chunks() -> object:
        for _ in range(100):
            yield b"x" * 10_000

    response = client.post("/jobs/add", content=chunks(), headers={"Content-Type": "application/json"})  # type: ignore[arg-type]
    assert response.status_code == 413


def test_a_delay_puts_the_job_in_delayed_until_its_time(client: TestClient, jobs: Jobs, worker: WorkerProcess) -> None:
    response = client.post("/jobs/add?delay=1500", json={"a": 1, "b": 1})
    assert response.status_code == 202
    assert response.json()["status"] == "delayed"
    job_id = response.json()["jobId"]
    assert client.get(f"/jobs/{job_id}").json()["state"] == "delayed"
    record = jobs.wait(job_id, timeout_s=15)
    assert record.state is JobState.COMPLETED
    assert record.startedAt is not None and record.startedAt >= record.createdAt


def test_bad_priority_and_delay_are_422_naming_the_parameter(client: TestClient) -> None:
    for query, name in (("priority=urgent", "priority"), ("delay=-5", "delay"), ("delay=soon", "delay")):
        response = client.post(f"/jobs/add?{query}", json={"a": 1, "b": 2})
        assert response.status_code == 422, query
        assert response.json()["detail"][0]["loc"] == ["query", name]


def test_a_batch_is_accepted_whole_and_each_job_runs(client: TestClient, jobs: Jobs, worker: WorkerProcess) -> None:
    response = client.post("/jobs/add/batch", json=[{"a": i, "b": 1} for i in range(5)])
    assert response.status_code == 202
    ids = response.json()["jobIds"]
    assert len(ids) == len(set(ids)) == 5
    assert [jobs.wait(job_id, timeout_s=15).result for job_id in ids] == [1, 2, 3, 4, 5]


def test_each_payload_is_validated_once_on_its_way_in(
    client: TestClient, jobs: Jobs, empty_held_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    validated: list[Any] = []
    validate = api_actors.HeldPayload.model_validate

    def counted(cls: type[BaseModel], value: Any, **options: Any) -> BaseModel:
        validated.append(value)
        return validate(value, **options)

    monkeypatch.setattr(api_actors.HeldPayload, "model_validate", classmethod(counted))
    assert client.post("/jobs/held", json={"key": "once"}).status_code == 202
    assert validated == [{"key": "once"}]  # it was two: the service layer's check, then the message's
    response = client.post("/jobs/held/batch", json=[{"key": str(i)} for i in range(100)])
    assert response.status_code == 202
    assert len(validated) == 1 + 100
    assert jobs.store.count() == 1 + 100


def test_a_batch_with_one_bad_item_enqueues_nothing_and_names_the_item(client: TestClient, jobs: Jobs) -> None:
    response = client.post("/jobs/add/batch", json=[{"a": 1, "b": 2}, {"a": 1}, {"a": "x", "b": 2}])
    assert response.status_code == 422
    locs = [item["loc"] for item in response.json()["detail"]]
    assert locs == [["body", 1, "b"], ["body", 2, "a"]]
    assert jobs.store.count() == 0


def test_a_batch_that_is_not_a_list_of_objects_is_422(client: TestClient) -> None:
    for body in ({"a": 1}, [1, 2], []):
        response = client.post("/jobs/add/batch", json=body)
        assert response.status_code == 422, body


def test_an_unknown_job_is_404_never_a_made_up_state(client: TestClient) -> None:
    response = client.get("/jobs/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.json() == {"detail": "Job not found"}
