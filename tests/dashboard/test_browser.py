"""The dashboard in headless Chromium against a real web process, worker, RabbitMQ and Redis."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect

from service.activity import Activity
from service.broker import store
from service.jobs import Jobs
from tests.support import test_actors
from tests.support.records import put_record
from tests.support.web import WebProcess
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def wait_for_heartbeat() -> None:
    """Each test starts with Redis flushed; a worker beats again within seconds."""
    deadline = time.monotonic() + 10
    while not Activity(store).workers():
        assert time.monotonic() < deadline, "no worker heartbeat within 10 s"
        time.sleep(0.1)


def keep(page: Page, artifacts: Path, name: str) -> None:
    """Written to artifacts/ on every run; docs/screenshots/ holds the copy the README shows."""
    page.screenshot(path=str(artifacts / name), full_page=True)


def test_a_job_is_watched_to_completion_through_its_progress_bar(
    web: WebProcess, worker: WorkerProcess, jobs: Jobs, page: Page, artifacts: Path
) -> None:
    job_id = test_actors.slow.send(key="watched", seconds=4, steps=20).message_id
    page.goto(f"{web.url}/dashboard/jobs/{job_id}")
    bar = page.locator("#progress")
    seen: set[int] = set()
    expect(page.locator("#job-state")).to_have_text("active")
    while page.locator("#job-state").inner_text() == "active" and len(seen) < 4:
        value = int(bar.evaluate("el => el.value"))
        if 0 < value < 100:
            seen.add(value)
            expect(page.locator("#progress-message")).to_have_text(re.compile(r"step \d+ of 20"))
        page.wait_for_timeout(150)
    assert len(seen) >= 3, f"progress bar values seen while active: {seen}"
    keep(page, artifacts, "job-active.png")
    expect(page.locator("#job-state")).to_have_text("completed", timeout=15_000)
    expect(page.locator("#result")).to_have_text("20")
    assert int(bar.evaluate("el => el.value")) == 100
    expect(page.locator("#attempts tbody tr")).to_have_count(1)
    expect(page.locator("#cancel")).to_have_count(0)
    keep(page, artifacts, "job.png")


def test_search_by_id_opens_the_job_and_an_unknown_id_is_said_plainly(web: WebProcess, page: Page) -> None:
    job_id = put_record("add", {"a": 4, "b": 5})
    page.goto(web.url + "/")
    page.fill("#search-id", job_id)
    page.press("#search-id", "Enter")
    expect(page).to_have_url(f"{web.url}/dashboard/jobs/{job_id}")
    expect(page.locator("#job-id")).to_have_text(job_id)
    expect(page.locator("#job-state")).to_have_text("queued")

    page.fill("#search-id", "not-a-real-job-id")
    page.click("header.top button[type=submit]")
    expect(page.locator("#missing")).to_contain_text("No job has the id not-a-real-job-id")
    assert "pending" not in page.content().lower()


def test_a_payload_with_a_script_tag_shows_as_text(web: WebProcess, page: Page) -> None:
    payload = "<script>document.title='owned'; window.xss = 1</script><img src=x onerror=window.xss=2>"
    job_id = put_record("ping", {"note": payload}, queue="default")
    dialogs: list[Dialog] = []
    page.on("dialog", lambda d: (dialogs.append(d), d.dismiss()))
    page.goto(f"{web.url}/dashboard/jobs/{job_id}")
    expect(page.locator("#payload")).to_contain_text(payload)
    assert page.title() != "owned"
    assert page.evaluate("window.xss") is None
    assert page.locator("main script, main img").count() == 0
    assert not dialogs


def test_the_overview_shows_queues_throughput_and_workers_at_laptop_and_phone_width(
    web: WebProcess, worker: WorkerProcess, jobs: Jobs, page: Page, artifacts: Path
) -> None:
    for i in range(3):
        jobs.wait(test_actors.add.send(a=i, b=i).message_id, timeout_s=15)
    jobs.wait(test_actors.flaky.send(key="overview", failures=99).message_id, timeout_s=20)
    put_record("add", {"a": 1, "b": 1})
    wait_for_heartbeat()
    page.goto(web.url + "/")
    row = page.locator('tr[data-queue="test"]')
    expect(row.locator('[data-figure="completed"]')).to_have_text("3")
    expect(row.locator('[data-figure="failed"]')).to_have_text("1")
    expect(page.locator("#workers-count")).not_to_have_text("0")
    expect(page.locator("#throughput .legend")).to_contain_text("3 completed")
    expect(page.locator("#open-warning")).to_contain_text("This dashboard is open.")
    keep(page, artifacts, "overview.png")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(web.url + "/")
    expect(row.locator('[data-figure="completed"]')).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    keep(page, artifacts, "overview-phone.png")


def test_screenshots_in_the_docs_are_refreshed_from_this_run(artifacts: Path) -> None:
    # Runs after the tests above (file order): copies the fresh images over the committed ones when asked.
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name in ("overview.png", "job.png", "overview-phone.png"):
        fresh = artifacts / name
        assert fresh.stat().st_size > 10_000, name
        if not (SCREENSHOTS / name).exists():
            shutil.copy(fresh, SCREENSHOTS / name)
