"""GET /jobs: newest first, filtered by state and actor, paged by cursor; bad filters are 422."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.ops.jobs import Jobs
from tests.support import test_actors


def test_jobs_are_listed_newest_first_and_paged_without_gaps_or_repeats(client: TestClient, jobs: Jobs) -> None:
    sent = [client.post("/jobs/add?delay=60000", json={"a": i, "b": 0}).json()["jobId"] for i in range(7)]
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = "/jobs?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(query)
        assert page.status_code == 200
        pages.append([job["jobId"] for job in page.json()["jobs"]])
        cursor = page.json()["next"]
        if cursor is None:
            break
        assert len(pages) < 10, pages
    seen = [job_id for page in pages for job_id in page]
    # Only this test's jobs are checked for order: the database is this pytest process's, and a session worker may
    # record a job an earlier test left in its queue (a worker records a job it meets without a record) meanwhile.
    assert [job_id for job_id in seen if job_id in sent] == list(reversed(sent))
    assert len(seen) == len(set(seen)), "a job listed twice"
    assert all(len(page) == 3 for page in pages[:-1]) and len(pages[-1]) <= 3, pages
    assert len(pages) >= 3


def test_jobs_are_filtered_by_state_and_by_actor(client: TestClient, jobs: Jobs) -> None:
    delayed = client.post("/jobs/add?delay=60000", json={"a": 1, "b": 1}).json()["jobId"]
    other = client.post("/jobs/record_run?delay=60000", json={"key": "listing"}).json()["jobId"]
    jobs.cancel(other)
    by_state = client.get("/jobs?state=cancelled").json()["jobs"]
    assert [job["jobId"] for job in by_state] == [other]
    by_actor = client.get("/jobs?actor=add").json()["jobs"]
    assert [job["jobId"] for job in by_actor] == [delayed]
    assert client.get("/jobs?actor=add&state=cancelled").json() == {"jobs": [], "next": None}
    assert test_actors.add.actor_name == "add"


def test_bad_filters_are_422_naming_the_parameter(client: TestClient) -> None:
    for query, name in (
        ("state=sleeping", "state"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=many", "limit"),
        ("cursor=yesterday", "cursor"),
        ("cursor=%D9%A3%D9%A1:abc", "cursor"),  # Arabic-Indic digits: ASCII digits only
        ("cursor=%C2%B2:abc", "cursor"),  # a superscript two
        ("limit=%D9%A3", "limit"),
    ):
        response = client.get(f"/jobs?{query}")
        assert response.status_code == 422, query
        assert response.json()["detail"][0]["loc"] == ["query", name], query


def test_limit_500_is_the_largest_page_allowed(client: TestClient) -> None:
    assert client.get("/jobs?limit=500").status_code == 200
