"""The dashboard's pages as HTML: what they say, what they escape, and the headers they carry."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.support.records import put_record
from tests.support.web import WebProcess

XSS = "<script>document.title='owned'</script>"


@pytest.fixture
def client(web: WebProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web.url, timeout=10) as http:
        yield http


def test_the_overview_lists_every_queue_with_its_figures(client: httpx.Client, jobs: Jobs) -> None:
    put_record()
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for queue in ("default", "test", "test-limited"):
        assert f'<tr data-queue="{queue}">' in page.text
    assert "Throughput, last hour" in page.text
    assert "Workers alive" in page.text


def test_the_overview_shows_the_recent_events_of_the_stream_newest_first(client: httpx.Client, jobs: Jobs) -> None:
    first, second = put_record(), put_record()
    jobs.cancel(first)
    page = client.get("/").text
    section = page.split('id="events"', 1)[1].split("</section>", 1)[0]
    assert "Recent events" in section
    rows = [row for row in section.split("<tr data-event=")[1:]]
    assert f"/dashboard/jobs/{first}" in rows[0] and "cancelled" in rows[0]
    assert any(f"/dashboard/jobs/{second}" in row and ">queued<" in row for row in rows[1:])


def test_every_page_forbids_inline_scripts_and_framing(client: httpx.Client, jobs: Jobs) -> None:
    job_id = put_record()
    for path in ("/", "/dashboard/jobs", f"/dashboard/jobs/{job_id}", "/dashboard/jobs/nope"):
        policy = client.get(path).headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, path


def test_a_payload_with_a_script_tag_is_escaped_on_the_job_page(client: httpx.Client, jobs: Jobs) -> None:
    job_id = put_record("ping", {"note": XSS}, queue="default")
    page = client.get(f"/dashboard/jobs/{job_id}")
    assert page.status_code == 200
    assert XSS not in page.text
    assert "&lt;script&gt;document.title=&#39;owned&#39;&lt;/script&gt;" in page.text


def test_searching_an_unknown_id_says_so_plainly_with_a_404(client: httpx.Client) -> None:
    page = client.get("/dashboard/jobs", params={"q": "no-such-job"})
    assert page.status_code == 404
    assert "No job has the id <code>no-such-job</code>" in page.text
    assert "pending" not in page.text.lower()


def test_searching_a_known_id_goes_to_its_page(client: httpx.Client, jobs: Jobs) -> None:
    job_id = put_record()
    found = client.get("/dashboard/jobs", params={"q": f"  {job_id} "}, follow_redirects=False)
    assert found.status_code == 303
    assert found.headers["location"] == f"/dashboard/jobs/{job_id}"


def test_the_page_of_an_unknown_job_is_a_404_that_never_says_pending(client: httpx.Client) -> None:
    page = client.get("/dashboard/jobs/0000-missing")
    assert page.status_code == 404
    assert "No job has the id" in page.text and "pending" not in page.text.lower()


def test_the_job_list_filters_by_state_and_actor_and_pages_through_older_jobs(client: httpx.Client, jobs: Jobs) -> None:
    ids = [put_record("add", {"a": i, "b": 0}) for i in range(30)]
    other = put_record("ping", queue="default")
    jobs.cancel(ids[0])
    first = client.get("/dashboard/jobs", params={"actor": "add"})
    assert first.status_code == 200
    shown = [i for i in ids if f'data-job-id="{i}"' in first.text]
    assert len(shown) == 25 and other not in first.text
    older = first.text.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    second = client.get(older)
    assert len([i for i in ids if f'data-job-id="{i}"' in second.text]) == 5
    cancelled = client.get("/dashboard/jobs", params={"state": JobState.CANCELLED.value})
    assert f'data-job-id="{ids[0]}"' in cancelled.text and cancelled.text.count("data-job-id=") == 1


def test_a_bad_filter_is_a_422_naming_it(client: httpx.Client) -> None:
    assert "state must be one of" in client.get("/dashboard/jobs", params={"state": "pending"}).text
    assert client.get("/dashboard/jobs", params={"state": "pending"}).status_code == 422
    assert client.get("/dashboard/jobs", params={"cursor": "garbage"}).status_code == 422


def test_a_cursor_with_digits_other_than_ascii_is_a_422_not_a_500(client: httpx.Client) -> None:
    # `\d` took these; the store could not read them as a score and the page answered 500.
    for cursor in ("\u0663\u0661:abc", "\u00b2:abc", "\uff11\uff12:abc", "12:abc def"):
        response = client.get("/dashboard/jobs", params={"cursor": cursor})
        assert response.status_code == 422, cursor
        assert "cursor must be the one an earlier page gave" in response.text
    assert client.get("/dashboard/jobs", params={"cursor": "1700000000000:abc"}).status_code == 200


def test_without_a_token_the_dashboard_says_plainly_that_it_is_open(client: httpx.Client) -> None:
    assert "This dashboard is open." in client.get("/").text


def test_the_script_and_stylesheet_are_served_by_the_service_itself(client: httpx.Client) -> None:
    page = client.get("/").text
    assert 'src="/dashboard/static/dashboard.js"' in page and 'href="/dashboard/static/dashboard.css"' in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    assert client.get("/dashboard/static/dashboard.js").status_code == 200
    assert client.get("/dashboard/static/dashboard.css").status_code == 200


def test_the_dashboard_pages_stay_out_of_the_openapi_document(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not [p for p in paths if p.startswith("/dashboard")]
    assert "/jobs/{jobId}/events" in paths


def test_every_screenshot_the_readme_shows_is_in_the_repository() -> None:
    root = Path(__file__).resolve().parents[2]
    shown = re.findall(r"!\[[^\]]*\]\((docs/screenshots/[^)]+)\)", (root / "README.md").read_text())
    assert {"docs/screenshots/overview.png", "docs/screenshots/job.png"} <= set(shown)
    for path in shown:
        assert (root / path).stat().st_size > 10_000, path
