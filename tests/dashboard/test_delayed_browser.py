"""The delayed-jobs page in headless Chromium against a real web process, worker, RabbitMQ and Redis."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect

from service.domain.states import JobState
from service.ops.delayed import DelayedJobs
from service.ops.jobs import Jobs
from tests.dashboard.test_browser import keep
from tests.support import test_actors
from tests.support.web import WebProcess
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.browser

HOUR_MS = 3_600_000


def test_a_delayed_job_is_run_now_from_the_queues_delayed_page_after_confirming(
    web: WebProcess, worker: WorkerProcess, jobs: Jobs, page: Page, artifacts: Path
) -> None:
    key = f"browser-{uuid.uuid4()}"
    soon = jobs.enqueue("record_run", {"key": key}, delay_ms=HOUR_MS).job_id
    later = jobs.enqueue("add", {"a": 2, "b": 3}, delay_ms=2 * HOUR_MS).job_id
    retrying = test_actors.flaky.send_with_options(
        kwargs={"key": key + "-flaky", "failures": 1}, retry_delays=[3 * HOUR_MS]
    ).message_id
    deadline = time.monotonic() + 15
    while DelayedJobs(jobs).list("test").total < 3:
        assert time.monotonic() < deadline, "the flaky job's retry never waited"
        time.sleep(0.05)

    page.goto(web.url + "/")
    page.locator('tr[data-queue="test"] [data-figure="delayed"] a').click()
    expect(page).to_have_url(f"{web.url}/dashboard/queues/test/delayed")
    rows = page.locator("#delayed tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_have_attribute("data-job-id", soon)
    expect(rows.nth(1)).to_have_attribute("data-job-id", later)
    expect(rows.nth(2)).to_have_attribute("data-job-id", retrying)
    expect(rows.nth(2)).to_contain_text("RuntimeError: planned failure 1")
    due = rows.nth(0).locator("time")
    assert due.get_attribute("datetime") == jobs.store.fields_of([soon], ["dueAt"])[0]["dueAt"]
    keep(page, artifacts, "delayed.png")

    questions: list[str] = []
    answers = iter([False, True])

    def answer(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.accept() if next(answers) else dialog.dismiss()

    page.on("dialog", answer)
    rows.nth(0).locator("button.run-now").click()  # dismissed: nothing is sent
    page.wait_for_timeout(300)
    assert jobs.get(soon).state is JobState.DELAYED
    rows.nth(0).locator("button.run-now").click()
    expect(page.locator("#status")).to_contain_text(f"Job {soon[:8]} sent to run now.")
    assert questions == [f"Run job {soon} now?"] * 2
    record = jobs.wait(soon, timeout_s=10)
    assert (record.state, record.result) == (JobState.COMPLETED, 1)
    expect(page.locator("#delayed tbody tr")).to_have_count(2)  # the page reloads without it
    assert {jobs.get(i).state for i in (later, retrying)} == {JobState.DELAYED}


def test_every_delayed_job_of_a_queue_is_cancelled_from_its_page_after_confirming(
    web: WebProcess, jobs: Jobs, page: Page
) -> None:
    ids = [jobs.enqueue("add", {"a": i, "b": 1}, delay_ms=HOUR_MS).job_id for i in range(2)]
    page.goto(f"{web.url}/dashboard/queues/test/delayed")
    expect(page.locator("#delayed tbody tr")).to_have_count(2)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-all")
    expect(page.locator("#status")).to_contain_text("Delayed jobs of test cancelled.")
    expect(page.locator("#delayed .empty")).to_have_text("Nothing waits in this queue.")
    assert {jobs.get(i).state for i in ids} == {JobState.CANCELLED}
