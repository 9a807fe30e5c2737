"""The dashboard in headless Chromium against a real web process, worker, RabbitMQ and Redis."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, expect

from actors.ping import ping
from service.bootstrap import broker, schedule_store, store
from service.domain.states import JobState
from service.ops.activity import Activity
from service.ops.jobs import Jobs
from service.store.pauses import PauseFlags
from tests.dashboard.conftest import TOKEN
from tests.support import api_actors, test_actors
from tests.support.records import move, put_record
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
    """Written to artifacts/ on every run; with REFRESH_SCREENSHOTS=1 also over the copy the README shows."""
    page.screenshot(path=str(artifacts / name), full_page=True)
    assert (artifacts / name).stat().st_size > 10_000, f"{name} looks empty"
    if os.environ.get("REFRESH_SCREENSHOTS") == "1" and (SCREENSHOTS / name).exists():
        shutil.copy(artifacts / name, SCREENSHOTS / name)


def test_a_job_sent_from_the_page_is_watched_to_completion_through_its_progress_bar(
    web: WebProcess, worker: WorkerProcess, jobs: Jobs, page: Page, artifacts: Path
) -> None:
    page.goto(f"{web.url}/dashboard/jobs")
    page.click("#send summary")
    page.select_option("#send-form select[name=actor]", "slow")
    page.select_option("#send-form select[name=priority]", "high")
    page.fill("#send-form textarea[name=payload]", '{"key": "watched", "seconds": 4, "steps": 20}')
    page.click("#send-form button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/jobs/[0-9a-f-]{36}$"))
    job_id = page.url.rsplit("/", 1)[1]
    assert jobs.get(job_id).priority == "high"
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


def test_a_bad_payload_sent_from_the_page_is_refused_naming_the_field(web: WebProcess, page: Page) -> None:
    page.goto(f"{web.url}/dashboard/jobs")
    page.click("#send summary")
    page.select_option("#send-form select[name=actor]", "add")
    page.fill("#send-form textarea[name=payload]", '{"a": "one"}')
    page.click("#send-form button[type=submit]")
    expect(page.locator("#status")).to_contain_text("Not sent: body.a:")
    expect(page.locator("#status")).to_contain_text("body.b: Field required")
    page.fill("#send-form textarea[name=payload]", "{not json")
    page.click("#send-form button[type=submit]")
    expect(page.locator("#status")).to_contain_text("The payload is not valid JSON")
    expect(page).to_have_url(f"{web.url}/dashboard/jobs")


def test_a_failed_job_is_retried_from_the_page(web: WebProcess, worker: WorkerProcess, jobs: Jobs, page: Page) -> None:
    job_id = test_actors.flaky.send(key="retried-from-page", failures=4).message_id
    assert jobs.wait(job_id, timeout_s=20).state is JobState.FAILED
    page.goto(f"{web.url}/dashboard/jobs/{job_id}")
    expect(page.locator("#failed-reason")).to_have_text("RuntimeError: planned failure 4")
    expect(page.locator("#traceback")).to_contain_text("planned failure 4")
    expect(page.locator("#attempts tbody tr")).to_have_count(4)
    page.click("#retry")
    expect(page.locator("#status")).to_contain_text("Job sent again.")
    expect(page.locator("#job-state")).to_have_text("completed", timeout=15_000)
    expect(page.locator("#result")).to_have_text("5")
    expect(page.locator("#attempts tbody tr")).to_have_count(5)
    expect(page.locator("#attempts tbody tr").last).to_contain_text("(run 2)")
    expect(page.locator("#retry")).to_have_count(0)


def test_a_waiting_job_is_cancelled_from_its_page_after_confirming(web: WebProcess, jobs: Jobs, page: Page) -> None:
    job_id = put_record("add", {"a": 1, "b": 2})
    page.goto(f"{web.url}/dashboard/jobs/{job_id}")
    answers = iter([False, True])
    questions: list[str] = []

    def answer(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.accept() if next(answers) else dialog.dismiss()

    page.on("dialog", answer)
    page.click("#cancel")  # dismissed: nothing happens
    page.wait_for_timeout(300)
    assert jobs.get(job_id).state is JobState.QUEUED
    page.click("#cancel")
    expect(page.locator("#job-state")).to_have_text("cancelled")
    assert questions == ["Cancel this job?", "Cancel this job?"]
    assert jobs.get(job_id).state is JobState.CANCELLED


def test_a_queue_is_purged_from_the_overview_only_after_confirming(web: WebProcess, jobs: Jobs, page: Page) -> None:
    queue = api_actors.QUEUE  # no worker consumes it here
    broker.declare_queue(queue, ensure=True)
    broker.flush(queue)
    waiting = [api_actors.held.send(key="purge").message_id for _ in range(3)]
    page.goto(web.url + "/")
    row = page.locator(f'tr[data-queue="{queue}"]')
    expect(row.locator('[data-figure="waiting"]')).to_have_text("3")
    confirm = iter([False, True])
    page.on("dialog", lambda d: d.accept() if next(confirm) else d.dismiss())
    row.locator("button", has_text="Purge").click()
    page.wait_for_timeout(300)
    assert all(jobs.get(j).state is JobState.QUEUED for j in waiting)
    row.locator("button", has_text="Purge").click()
    expect(page.locator("#status")).to_contain_text(f"Queue {queue} purged.")
    expect(page.locator(f'tr[data-queue="{queue}"] [data-figure="waiting"]')).to_have_text("0")
    assert all(jobs.get(j).state is JobState.CANCELLED for j in waiting)


def test_a_queue_is_paused_and_resumed_from_the_overview(
    web: WebProcess, worker: WorkerProcess, jobs: Jobs, page: Page
) -> None:
    page.goto(web.url + "/")
    row = page.locator('tr[data-queue="test"]')
    expect(row.locator('[data-figure="paused"]')).to_have_text("running")
    try:
        row.locator("button", has_text="Pause").click()
        expect(page.locator("#status")).to_contain_text("Queue test paused.")
        expect(page.locator('tr[data-queue="test"] [data-figure="paused"]')).to_have_text("paused")
        time.sleep(2.5)  # every worker notices the flag within about a second
        job_id = test_actors.add.send(a=2, b=2).message_id
        time.sleep(2)
        # The situation: the same worker runs a job from its other queue meanwhile, so it would have run this one.
        assert jobs.wait(ping.send(probe="paused").message_id, timeout_s=15).state is JobState.COMPLETED
        assert jobs.get(job_id).state is JobState.QUEUED, "a job started from a paused queue"
        page.locator('tr[data-queue="test"] button', has_text="Resume").click()
        expect(page.locator("#status")).to_contain_text("Queue test resumed.")
        expect(page.locator('tr[data-queue="test"] [data-figure="paused"]')).to_have_text("running")
        assert jobs.wait(job_id, timeout_s=15).state is JobState.COMPLETED
    finally:
        PauseFlags(store.client).resume("test")  # never leave the shared worker paused for the next test


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
    # Jobs of earlier tests may still finish on the shared worker, so the figures are at least this test's own.
    completed = figure(row, "completed", at_least=3)
    figure(row, "failed", at_least=1)
    expect(page.locator("#workers-count")).not_to_have_text("0")
    # At least this test's 3: a job of an earlier test may have finished in the same minute.
    expect(page.locator("#throughput .legend")).to_contain_text(re.compile(r"\b([3-9]|[1-9][0-9]+) completed"))
    expect(page.locator("#open-warning")).to_contain_text("This dashboard is open.")
    keep(page, artifacts, "overview.png")
    # The figures refresh by themselves while the page is open.
    jobs.wait(test_actors.add.send(a=9, b=9).message_id, timeout_s=15)
    figure(row, "completed", at_least=completed + 1, timeout_s=12)

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(web.url + "/")
    expect(row.locator('[data-figure="completed"]')).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    keep(page, artifacts, "overview-phone.png")


def test_the_jobs_list_and_a_job_page_fit_a_phone_width_window(
    web: WebProcess, browser: Browser, artifacts: Path
) -> None:
    job_id = failed_job({"a": 1, "b": 2, "note": "x" * 300})
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    for path in ("/dashboard/jobs", f"/dashboard/jobs/{job_id}"):
        page.goto(web.url + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    expect(page.locator("#retry")).to_be_visible()
    expect(page.locator("#failed-reason")).to_be_visible()
    keep(page, artifacts, "job-phone.png")
    context.close()


def figure(row: Locator, name: str, *, at_least: int, timeout_s: float = 5) -> int:
    """The number shown in a queue row's cell, once it reaches `at_least` (the page refreshes by itself)."""
    cell = row.locator(f'[data-figure="{name}"]')
    deadline = time.monotonic() + timeout_s
    while True:
        text = cell.inner_text().strip()
        if text.isdigit() and int(text) >= at_least:
            return int(text)
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} shows {text!r}, expected at least {at_least}")
        time.sleep(0.2)


def failed_job(data: dict[str, object] | None = None) -> str:
    """A job of `add` on queue "test" that failed, as the status middleware would have recorded it."""
    job_id = put_record("add", data or {"a": 20, "b": 22})
    move(job_id, JobState.ACTIVE)
    move(job_id, JobState.FAILED, failedReason="RuntimeError: planned", traceback="Traceback: planned")
    return job_id


def test_actions_are_refused_without_the_token_when_one_is_set(
    token_web: WebProcess, worker: WorkerProcess, jobs: Jobs, browser: Browser
) -> None:
    job_id = failed_job()
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("dialog", lambda d: d.accept())
    actions: list[str] = []
    page.on("request", lambda r: actions.append(r.url) if r.method == "POST" else None)
    page.goto(token_web.url + "/")
    expect(page.locator("#open-warning")).to_have_count(0)
    expect(page.locator("#token-form")).to_be_visible()
    retry_all = page.locator('tr[data-queue="test"] button', has_text="Retry failed")

    retry_all.click()  # no token yet: the page asks for it and sends nothing
    expect(page.locator("#status")).to_contain_text("Enter the API token first")
    assert actions == []

    page.fill("#token-input", "wrong-token")
    page.click("#token-form button")
    retry_all.click()
    expect(page.locator("#status")).to_contain_text("missing or invalid bearer token")
    expect(page.locator("#token-form")).to_be_visible()  # the refused token was forgotten
    assert len(actions) == 1
    assert jobs.get(job_id).state is JobState.FAILED

    page.fill("#token-input", TOKEN)
    page.click("#token-form button")
    expect(page.locator("#token-set")).to_be_visible()
    retry_all.click()
    expect(page.locator("#status")).to_contain_text("Failed jobs of test sent again.")
    assert jobs.wait(job_id, timeout_s=15).state is JobState.COMPLETED

    page.reload()  # kept for the tab...
    expect(page.locator("#token-set")).to_be_visible()
    other = context.browser.new_context().new_page() if context.browser else None  # ...and only for the tab
    assert other is not None
    other.goto(token_web.url + "/")
    expect(other.locator("#token-form")).to_be_visible()
    other.context.close()
    context.close()


@contextlib.contextmanager
def another_site() -> Iterator[str]:
    """A plain page on another port of 127.0.0.1: another origin, as a hostile site would be."""

    class Blank(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>elsewhere</title><p>elsewhere</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Blank)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_request_forged_by_another_site_is_refused(web: WebProcess, jobs: Jobs, page: Page) -> None:
    job_id = failed_job()
    target = f"{web.url}/dashboard/queues/test/retry-failed"
    with another_site() as elsewhere:
        page.goto(elsewhere)
        # A "simple" cross-site POST, which browsers send without asking the target first.
        page.evaluate(
            """async (url) => {
                try {
                    const headers = {"Content-Type": "text/plain"};
                    await fetch(url, {method: "POST", mode: "no-cors", body: "x", headers: headers});
                } catch (error) {}
            }""",
            target,
        )
    deadline = time.monotonic() + 5
    while '"POST /dashboard/queues/test/retry-failed HTTP/1.1" 403' not in web.output():
        assert time.monotonic() < deadline, "the forged request did not arrive, or was not refused"
        time.sleep(0.1)
    assert jobs.get(job_id).state is JobState.FAILED
    # The same request from the dashboard's own page goes through.
    page.goto(f"{web.url}/dashboard/jobs")
    assert page.evaluate("async (url) => (await fetch(url, {method: 'POST'})).status", target) == 202
    assert jobs.get(job_id).state is not JobState.FAILED


def test_the_schedules_page_shows_each_cron_jobs_next_and_last_run(web: WebProcess, page: Page) -> None:
    def next_hour() -> str:
        return (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%d %H:00:00")

    before = next_hour()
    page.goto(f"{web.url}/dashboard/schedules")
    hours = {before, next_hour()}  # two only if the hour turned meanwhile
    row = page.locator('tr[data-actor="cleanup_jobs"]')
    expect(row).to_contain_text("0 * * * *")
    expect(row.locator('[data-field="next"]')).to_contain_text(re.compile("|".join(map(re.escape, hours))))
    expect(row.locator('[data-field="last"]')).to_have_text("never")
    expect(page.locator('tr[data-actor="generate_report"]')).to_contain_text("0 0 * * *")

    # What a scheduler records when it sends a tick, and the job that tick became.
    job_id = put_record("cleanup_jobs", {}, queue="maintenance")
    tick = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    schedule_store.record_run("cleanup_jobs", tick, job_id)
    page.reload()
    expect(row.locator('[data-field="last"]')).to_contain_text(tick.strftime("%Y-%m-%d %H:00:00"))
    expect(row.locator('[data-field="job"]')).to_contain_text(job_id[:8])
    expect(row.locator('[data-field="job"] .badge')).to_have_text("queued")
    row.locator('[data-field="job"] a').click()
    expect(page.locator("#job-id")).to_have_text(job_id)
