"""A payload that is wrong for one of the four jobs gets 422 from the API, naming each bad field; nothing is sent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.ops.jobs import Jobs
from service.web import app


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("actor", "payload", "expected"),
    [
        (
            "send_email",
            {"to": ["ok@example.com", "nope"], "subject": "a\nb", "headers": {"From": "x@example.com"}},
            {
                ("body", "to", 1): "value is not a valid email address",
                ("body", "subject"): "must be a single line",
                ("body", "text"): "Field required",
                ("body", "headers"): "cannot be given",
            },
        ),
        (
            "deliver_webhook",
            {"url": "ftp://example.com", "event": "", "body": [1], "headers": {"webhook-id": "x"}},
            {
                ("body", "url"): "URL scheme should be 'http' or 'https'",
                ("body", "event"): "at least 1 character",
                ("body", "body"): "valid dictionary",
                ("body", "headers"): "set by the delivery",
            },
        ),
        (
            "generate_report",
            {"format": "xml", "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
            {("body", "format"): "'csv' or 'json'"},
        ),
        (
            "cleanup_jobs",
            {"budget_s": 0, "all": True},
            {("body", "budget_s"): "greater than 0", ("body", "all"): "Extra"},
        ),
    ],
)
def test_a_wrong_payload_is_422_naming_each_bad_field(
    client: TestClient, jobs: Jobs, actor: str, payload: dict[str, Any], expected: dict[tuple[Any, ...], str]
) -> None:
    response = client.post(f"/jobs/{actor}", json=payload)
    assert response.status_code == 422, response.text
    problems = {tuple(item["loc"]): item["msg"] for item in response.json()["detail"]}
    for where, words in expected.items():
        assert where in problems, (where, problems)
        assert words in problems[where], (where, problems[where])
    assert jobs.store.count() == 0


def test_report_windows_must_run_forwards(client: TestClient) -> None:
    response = client.post(
        "/jobs/generate_report", json={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    )
    assert response.status_code == 422
    assert "since must be before until" in response.text
