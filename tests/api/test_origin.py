"""Requests that change state are refused when a browser sends them from another site."""

from __future__ import annotations

import httpx

from service.jobs import Jobs
from tests.support.records import put_record


def test_a_post_from_another_origin_is_refused_with_403(server: str, jobs: Jobs) -> None:
    job_id = put_record()
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        response = httpx.delete(f"{server}/jobs/{job_id}", headers=headers, timeout=5)
        assert response.status_code == 403, headers
        assert response.json() == {"detail": "cross-site request refused: send it from this service's own pages"}
    assert jobs.get(job_id).state == "queued"


def test_a_post_from_the_dashboard_itself_or_from_a_service_without_origin_passes(server: str) -> None:
    own = server.removeprefix("http://")
    for headers in ({"Origin": f"http://{own}", "Sec-Fetch-Site": "same-origin"}, {}):
        response = httpx.post(f"{server}/jobs/add", json={"a": 1, "b": 2}, headers=headers, timeout=5)
        # Exactly accepted: "not 403" would also let a 401, a 422 or a 500 pass.
        assert response.status_code == 202, (headers, response.text)
        assert response.json()["status"] == "queued" and response.json()["jobId"], response.text


def test_reads_are_never_refused_whatever_their_origin(server: str) -> None:
    response = httpx.get(f"{server}/healthz", headers={"Origin": "https://evil.example"}, timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
