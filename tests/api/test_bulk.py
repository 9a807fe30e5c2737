"""POST /jobs/bulk and GET /jobs/bulk/{bulkId}: a dry run answers the count, a run answers 202 with where to follow
it, bad filters and actions are 422 naming the field, an unknown run is 404."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.bootstrap import store
from service.domain.states import JobState
from tests.support.bulk_actors import QUEUE, recorded_jobs
from tests.support.graveyard import empty


@pytest.fixture
def bulk_queue() -> Iterator[str]:
    empty(QUEUE)
    yield QUEUE
    empty(QUEUE)


def test_a_dry_run_counts_and_a_run_retries_exactly_those_and_reports_its_progress(
    client: TestClient, bulk_queue: str
) -> None:
    failed = recorded_jobs(3, JobState.FAILED, account="acme", reason="ConnectionError: reset")
    recorded_jobs(2, JobState.FAILED, account="other", reason="ConnectionError: reset")
    body = {"filter": {"key": "acme", "reason": "connectionerror"}, "action": "retry"}

    dry = client.post("/jobs/bulk", json={**body, "dryRun": True})
    assert dry.status_code == 200
    assert dry.json() == {"action": "retry", "filter": {"key": "acme", "reason": "connectionerror"}, "count": 3}
    assert all(store.get(job_id).state is JobState.FAILED for job_id in failed)  # type: ignore[union-attr]

    started = client.post("/jobs/bulk", json=body)
    assert started.status_code == 202
    run = started.json()
    assert started.headers["Location"] == f"/jobs/bulk/{run['bulkId']}"
    assert (run["action"], run["total"], run["filter"]) == ("retry", 3, {"key": "acme", "reason": "connectionerror"})
    deadline = time.monotonic() + 20
    while (progress := client.get(started.headers["Location"]).json())["state"] == "running":
        assert time.monotonic() < deadline, progress
        time.sleep(0.05)
    assert (progress["state"], progress["done"], progress["acted"], progress["skipped"]) == ("done", 3, 3, 0)
    assert progress["finishedAt"] and progress["startedAt"] <= progress["finishedAt"]
    assert all(store.get(job_id).state is JobState.QUEUED for job_id in failed)  # type: ignore[union-attr]


def test_bad_bulk_requests_are_422_naming_the_field(client: TestClient) -> None:
    for body, loc in (
        ({"filter": {"createdAfter": "soon"}, "action": "retry"}, ["body", "filter", "createdAfter"]),
        (
            {"filter": {"createdAfter": "2025-02-01", "createdBefore": "2025-01-01"}, "action": "retry"},
            ["body", "filter", "createdBefore"],
        ),
        ({"filter": {"state": "sleeping"}, "action": "retry"}, ["body", "filter", "state"]),
        ({"filter": {"colour": "red"}, "action": "retry"}, ["body", "filter", "colour"]),
        ({"filter": {}, "action": "delete"}, ["body", "action"]),
        ({"action": "retry"}, ["body", "filter"]),
    ):
        response = client.post("/jobs/bulk", json=body)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"] == loc, (body, response.json())


def test_an_unknown_bulk_run_is_404(client: TestClient) -> None:
    response = client.get("/jobs/bulk/no-such-run")
    assert response.status_code == 404
    assert response.json() == {"detail": "Bulk run not found"}
