"""Requests that change state are refused when a browser sends them from another site."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from service.jobs import Jobs
from tests.support.records import put_record
from tests.support.web import WebProcess


@pytest.fixture(scope="module")
def web() -> Iterator[WebProcess]:
    with WebProcess() as process:
        yield process


def test_a_post_from_another_origin_is_refused_with_403(web: WebProcess, jobs: Jobs) -> None:
    job_id = put_record()
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        response = httpx.delete(f"{web.url}/jobs/{job_id}", headers=headers, timeout=5)
        assert response.status_code == 403, headers
        assert "cross-site request refused" in response.json()["detail"]
    assert jobs.get(job_id).state == "queued"


def test_a_post_from_the_dashboard_itself_or_from_a_service_without_origin_passes(web: WebProcess) -> None:
    own = f"127.0.0.1:{web.port}"
    for headers in ({"Origin": f"http://{own}", "Sec-Fetch-Site": "same-origin"}, {}):
        response = httpx.post(f"{web.url}/jobs/add", json={"a": 1, "b": 2}, headers=headers, timeout=5)
        assert response.status_code != 403, headers


def test_reads_are_never_refused_whatever_their_origin(web: WebProcess) -> None:
    response = httpx.get(f"{web.url}/healthz", headers={"Origin": "https://evil.example"}, timeout=5)
    assert response.status_code == 200
