"""GET /jobs as a search: key, actor, state, a creation window and text in failedReason, combined; newest first and
paged by cursor; a page examines a bounded number of jobs, so a search for rare text comes back short, never slow."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from service.bootstrap import store
from service.domain.clock import iso_from_ms, now_ms
from service.domain.job_filter import JobFilter
from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.support.bulk_actors import recorded_jobs


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [job["jobId"] for job in response.json()["jobs"]]


def test_key_actor_state_window_and_reason_combine_and_list_newest_first(client: TestClient, jobs: Jobs) -> None:
    base = now_ms() - 60_000
    acme_failed = recorded_jobs(
        3, JobState.FAILED, account="acme", reason="SMTP 550: Mailbox FULL", created_ms=[base, base + 10, base + 20]
    )
    recorded_jobs(2, JobState.FAILED, account="acme", reason="timeout", created_ms=base + 5)
    recorded_jobs(2, JobState.FAILED, account="other", reason="mailbox full", created_ms=base + 15)
    acme_queued = recorded_jobs(2, JobState.QUEUED, account="acme", created_ms=base + 30)
    recorded_jobs(1, JobState.FAILED, account="acme", reason="mailbox full", actor="add", queue="test")

    found = ids(client.get("/jobs", params={"key": "acme", "actor": "bulk_target", "reason": "mailbox full"}))
    assert found == list(reversed(acme_failed))  # case-insensitive, newest first, the other key and actor left out
    assert set(ids(client.get("/jobs", params={"key": "acme", "state": "queued"}))) == set(acme_queued)
    window = {"key": "acme", "createdAfter": iso_from_ms(base + 10), "createdBefore": iso_from_ms(base + 20)}
    assert ids(client.get("/jobs", params=window)) == [acme_failed[1]]  # after is inclusive, before exclusive
    with_zone = {"key": "acme", "createdAfter": "2000-01-01T01:00:00+01:00", "state": "failed", "reason": "full"}
    assert len(ids(client.get("/jobs", params=with_zone))) == 4  # the other actor's job too
    assert ids(client.get("/jobs", params={"key": "nobody", "actor": "bulk_target"})) == []


def test_a_search_pages_through_every_match_once_even_within_one_millisecond(client: TestClient, jobs: Jobs) -> None:
    stamp = now_ms() - 1000
    same_ms = set(recorded_jobs(9, JobState.FAILED, account="acme", reason="boom", created_ms=stamp))
    recorded_jobs(4, JobState.FAILED, account="acme", reason="other", created_ms=stamp)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"key": "acme", "reason": "BOOM", "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.get("/jobs", params=params)
        seen += ids(page)
        cursor = page.json()["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) and set(seen) == same_ms


def test_a_page_examines_a_bounded_number_of_jobs_and_comes_back_short_with_a_cursor(jobs: Jobs) -> None:
    base = now_ms() - 60_000
    rare = recorded_jobs(2, JobState.FAILED, reason="needle", created_ms=[base, base + 1])
    recorded_jobs(30, JobState.FAILED, reason="hay", created_ms=[base + 2 + i for i in range(30)])
    flt = JobFilter(reason="NEEDLE")
    pages, found, cursor = 0, [], None
    while True:
        page = store.search(flt, limit=50, cursor=cursor, examine=10)
        pages += 1
        found += [job.jobId for job in page.jobs]
        assert page.next is not None or pages == 4, pages  # 32 jobs, 10 examined a page: 4 pages, the last ends it
        if page.next is None:
            break
        cursor = page.next
    assert found == list(reversed(rare)) and pages == 4


def test_the_index_with_fewer_jobs_in_the_window_is_the_one_walked(jobs: Jobs) -> None:
    recorded_jobs(40, JobState.FAILED, account="big", reason="x")
    small = recorded_jobs(3, JobState.FAILED, account="small", reason="x")
    # The key's index holds 3 jobs, the state's 43: examining 5 is enough only if the key's index is walked.
    page = store.search(JobFilter(key="small", state=JobState.FAILED), limit=10, examine=5)
    assert {job.jobId for job in page.jobs} == set(small) and page.next is None
    page = store.search(JobFilter(key="big", state=JobState.FAILED, actor="bulk_target"), limit=50, examine=100)
    assert len(page.jobs) == 40


def test_bad_search_filters_are_422_naming_the_parameter(client: TestClient) -> None:
    for params, name in (
        ({"createdAfter": "yesterday"}, "createdAfter"),
        ({"createdBefore": "2025-13-01"}, "createdBefore"),
        ({"createdAfter": "2025-02-01", "createdBefore": "2025-01-01"}, "createdBefore"),
        ({"createdAfter": "2" * 65}, "createdAfter"),
        ({"reason": ""}, "reason"),
        ({"reason": "x" * 201}, "reason"),
        ({"key": "a\nb"}, "key"),
        ({"state": "sleeping", "key": "acme"}, "state"),
    ):
        response = client.get("/jobs", params=params)
        assert response.status_code == 422, params
        assert response.json()["detail"][0]["loc"] == ["query", name], (params, response.json())
