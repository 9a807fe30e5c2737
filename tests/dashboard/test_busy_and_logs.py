"""The Busy page and a job's Logs section: as HTML, and live in headless Chromium against a real web process and
worker (Busy: a running job appears with its elapsed time and leaves when done; Logs: lines appear as logged)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from service.bootstrap import services
from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.support import log_actors
from tests.support.records import put_record
from tests.support.web import WebProcess
from tests.support.workers import WorkerProcess

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
XSS = "<script>document.title='owned'</script>"


@pytest.fixture(scope="module")
def log_worker() -> Iterator[WorkerProcess]:
    with WorkerProcess(threads=3, queues=[log_actors.QUEUE], modules=["tests.support.log_actors"]) as process:
        yield process


@pytest.fixture
def client(web: WebProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web.url, timeout=10) as http:
        yield http


def keep(page: Page, artifacts: Path, name: str) -> None:
    """Written to artifacts/ on every run; with REFRESH_SCREENSHOTS=1 also to the copy the README shows."""
    page.screenshot(path=str(artifacts / name), full_page=True)
    assert (artifacts / name).stat().st_size > 10_000, f"{name} looks empty"
    if os.environ.get("REFRESH_SCREENSHOTS") == "1":
        shutil.copy(artifacts / name, SCREENSHOTS / name)


def test_the_busy_page_says_when_no_thread_is_busy_and_is_in_the_navigation(client: httpx.Client) -> None:
    page = client.get("/dashboard/busy")
    assert page.status_code == 200
    assert 'id="busy-empty"' in page.text and "No worker thread is running a job." in page.text
    assert 'href="/dashboard/busy" aria-current="page"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_the_job_page_shows_its_lines_escaped(client: httpx.Client, jobs: Jobs, log_worker: WorkerProcess) -> None:
    job_id = jobs.enqueue("chatty", {"lines": 2, "text": XSS}).job_id
    jobs.wait(job_id, timeout_s=20)
    list(services().job_logs.follow(job_id, timeout_s=10))  # its last lines arrived
    page = client.get(f"/dashboard/jobs/{job_id}")
    assert page.status_code == 200
    assert 'id="logs"' in page.text and "data-live" not in page.text  # finished: nothing to follow
    assert page.text.count('class="log-line info"') == 2
    assert XSS not in page.text and "&lt;script&gt;" in page.text


def test_a_job_that_logged_nothing_says_so(client: httpx.Client) -> None:
    job_id = put_record()
    page = client.get(f"/dashboard/jobs/{job_id}")
    assert "No lines logged yet." in page.text and "data-live" in page.text


@pytest.mark.browser
def test_a_running_job_appears_on_the_busy_page_with_its_elapsed_time_and_leaves_when_done(
    web: WebProcess, log_worker: WorkerProcess, jobs: Jobs, page: Page, artifacts: Path
) -> None:
    page.goto(f"{web.url}/dashboard/busy")
    expect(page.locator("#busy-empty")).to_be_visible()
    other = jobs.enqueue("chatty", {"lines": 30, "seconds": 6, "text": "other"}).job_id
    job_id = jobs.enqueue("chatty", {"lines": 20, "seconds": 4, "text": "busy"}).job_id
    row = page.locator(f'#busy-rows tr[data-job-id="{job_id}"]')
    expect(row).to_have_count(1)
    expect(row).to_contain_text("chatty")
    elapsed = row.locator('[data-field="elapsed"]')
    first = float(elapsed.inner_text().split()[0])
    expect(row.locator('[data-field="progress"]')).to_contain_text(re.compile(r"line \d+ of 20"))
    page.wait_for_timeout(1500)
    assert float(elapsed.inner_text().split()[0]) > first, "elapsed time does not move"
    # Other tests' workers may beat in this Redis database too: their threads count, their jobs are done.
    expect(page.locator("#busy-summary")).to_contain_text(re.compile(r"^2 of \d+ worker threads busy"))
    keep(page, artifacts, "busy.png")
    row.locator("a").click()
    expect(page).to_have_url(f"{web.url}/dashboard/jobs/{job_id}")
    page.go_back()
    expect(page.locator(f'#busy-rows tr[data-job-id="{job_id}"]')).to_have_count(0, timeout=15_000)
    assert jobs.get(job_id).state is JobState.COMPLETED
    jobs.wait(other, timeout_s=15)
    expect(page.locator("#busy-empty")).to_be_visible()


@pytest.mark.browser
def test_a_running_jobs_page_shows_its_log_lines_as_they_are_logged(
    web: WebProcess, log_worker: WorkerProcess, jobs: Jobs, page: Page, artifacts: Path
) -> None:
    job_id = jobs.enqueue("chatty", {"lines": 12, "seconds": 6, "text": "working on item"}).job_id
    page.goto(f"{web.url}/dashboard/jobs/{job_id}")
    lines = page.locator("#log-lines .log-line")
    counts: list[int] = []
    while page.locator("#job-state").inner_text() in ("queued", "active") and len(set(counts)) < 4:
        counts.append(lines.count())
        page.wait_for_timeout(300)
    assert len({c for c in counts if 0 < c < 12}) >= 2, f"line counts seen while the job ran: {counts}"
    expect(lines.first).to_contain_text("INFO tests.chatty #1 working on item 1")
    keep(page, artifacts, "job-logs.png")
    expect(page.locator("#job-state")).to_have_text("completed", timeout=15_000)
    expect(lines).to_have_count(12)
    expect(lines.last).to_contain_text("working on item 12")
