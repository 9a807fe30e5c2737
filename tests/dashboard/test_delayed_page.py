"""The delayed-jobs page as HTML, and its one-job actions: unknown queues, jobs no longer delayed, token, origin."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.dashboard.conftest import TOKEN
from tests.support.web import WebProcess

HOUR_MS = 3_600_000


@pytest.fixture
def client(web: WebProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web.url, timeout=10) as http:
        yield http


def test_the_page_lists_the_delayed_jobs_and_an_unknown_queue_is_said_plainly_with_a_404(
    client: httpx.Client, jobs: Jobs
) -> None:
    job_id = jobs.enqueue("add", {"a": 1, "b": 2}, delay_ms=HOUR_MS).job_id
    page = client.get("/dashboard/queues/test/delayed")
    assert page.status_code == 200
    assert f'<tr data-job-id="{job_id}">' in page.text and "1 delayed" in page.text
    assert "in 59 min" in page.text  # how long until it is due
    assert "script-src 'self'" in page.headers["content-security-policy"]
    missing = client.get("/dashboard/queues/no-such-queue/delayed")
    assert missing.status_code == 404 and "There is no queue" in missing.text
    assert 'href="/dashboard/queues/test/delayed"' in client.get("/").text


def test_one_job_actions_answer_404_for_an_unknown_queue_and_409_for_a_job_no_longer_delayed(
    client: httpx.Client, jobs: Jobs
) -> None:
    job_id = jobs.enqueue("add", {"a": 1, "b": 2}, delay_ms=HOUR_MS).job_id
    unknown = client.post(f"/dashboard/queues/no-such-queue/delayed/{job_id}/run-now")
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "Unknown queue: no-such-queue"})
    cancelled = client.post(f"/dashboard/queues/test/delayed/{job_id}/cancel")
    assert (cancelled.status_code, cancelled.json()["count"]) == (202, 1)
    for action in ("run-now", "cancel"):
        again = client.post(f"/dashboard/queues/test/delayed/{job_id}/{action}")
        assert (again.status_code, again.json()) == (409, {"detail": "that job is no longer delayed in this queue"})
    assert jobs.get(job_id).state is JobState.CANCELLED


def test_one_job_actions_refuse_a_missing_token_and_a_cross_site_request(
    token_web: WebProcess, web: WebProcess, jobs: Jobs
) -> None:
    job_id = jobs.enqueue("add", {"a": 1, "b": 2}, delay_ms=HOUR_MS).job_id
    for action in ("run-now", "cancel"):
        path = f"/dashboard/queues/test/delayed/{job_id}/{action}"
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            assert httpx.post(token_web.url + path, headers=headers, timeout=5).status_code == 401
        forged = httpx.post(web.url + path, headers={"Origin": "https://evil.example"}, timeout=5)
        assert forged.status_code == 403
    assert jobs.get(job_id).state is JobState.DELAYED
    let_in = httpx.post(
        f"{token_web.url}/dashboard/queues/test/delayed/{job_id}/cancel",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert let_in.status_code == 202
