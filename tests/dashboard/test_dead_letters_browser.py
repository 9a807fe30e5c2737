"""The dead-letter page in headless Chromium against a real web process: list, requeue one, delete all."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect

from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.dashboard.conftest import TOKEN
from tests.support.api_actors import QUEUE
from tests.support.graveyard import bury, dead_ids, empty, read_queue
from tests.support.web import WebProcess

pytestmark = pytest.mark.browser

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "dead-letters.png"


def accept(dialogs: list[str]) -> object:
    def answer(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    return answer


def test_the_dead_letter_page_lists_them_and_requeues_one_and_deletes_all_after_confirming(
    web: WebProcess, jobs: Jobs, page: Page, artifacts: Path
) -> None:
    empty(QUEUE)
    ids = bury(
        "held",
        [
            {"key": "invoice-2291"},
            {"key": "invoice-2292", "api_key": "sk_live_hidden"},
            {"key": "invoice-2293"},
        ],
        reason="PermanentError: the invoice service answered 410 Gone",
    )
    try:
        page.goto(web.url)
        page.click(f"tr[data-queue='{QUEUE}'] td[data-figure=dead] a")
        expect(page.locator("#dead-count")).to_have_text("3")
        rows = page.locator("#dead-letters tbody tr")
        expect(rows).to_have_count(3)
        assert [rows.nth(i).get_attribute("data-job") for i in range(3)] == ids  # oldest first
        expect(rows.nth(0).locator(".reason")).to_have_text("PermanentError: the invoice service answered 410 Gone")
        expect(rows.nth(1).locator(".preview")).to_have_text('{"api_key": "***", "key": "invoice-2292"}')
        page.screenshot(path=str(artifacts / "dead-letters.png"), full_page=True)
        if os.environ.get("REFRESH_SCREENSHOTS") == "1" or not SCREENSHOT.exists():
            shutil.copy(artifacts / "dead-letters.png", SCREENSHOT)

        dialogs: list[str] = []
        page.on("dialog", accept(dialogs))  # type: ignore[arg-type]
        rows.nth(1).locator("button.requeue-one").click()
        expect(page.locator("#status")).to_have_text(f"Job {ids[1]} requeued.")
        assert dialogs == [f"Send job {ids[1]} back for another try?"]
        expect(rows).to_have_count(2)  # the page reloads
        assert dead_ids(QUEUE) == [ids[0], ids[2]]
        assert [letter.job_id for letter in read_queue(QUEUE)] == [ids[1]]
        assert jobs.get(ids[1]).state is JobState.QUEUED

        page.click("#delete-all")
        expect(page.locator("#status")).to_have_text(f"Dead letters of {QUEUE} deleted.")
        assert dialogs[-1] == f"Delete every dead letter of queue {QUEUE} for good? Their jobs stay failed."
        expect(page.locator("#dead-count")).to_have_text("0")
        expect(page.locator("#dead .empty")).to_have_text("No dead letters.")
        assert dead_ids(QUEUE) == []
        assert jobs.get(ids[0]).state is JobState.FAILED
    finally:
        empty(QUEUE)


def test_a_declined_confirmation_changes_nothing(web: WebProcess, page: Page) -> None:
    empty(QUEUE)
    ids = bury("held", [{"key": "kept"}])
    try:
        page.goto(f"{web.url}/dashboard/queues/{QUEUE}/dead")
        page.on("dialog", lambda dialog: dialog.dismiss())
        page.click("#delete-all")
        page.locator("#dead-letters tbody tr button.requeue-one").click()
        page.wait_for_timeout(500)
        assert dead_ids(QUEUE) == ids
    finally:
        empty(QUEUE)


def test_with_a_token_set_the_page_sends_nothing_until_it_has_the_right_one(token_web: WebProcess, page: Page) -> None:
    empty(QUEUE)
    ids = bury("held", [{"key": "guarded-page"}])
    try:
        page.goto(f"{token_web.url}/dashboard/queues/{QUEUE}/dead")
        page.on("dialog", lambda dialog: dialog.accept())
        page.click("#delete-all")
        expect(page.locator("#status")).to_contain_text("Enter the API token first")
        page.fill("#token-input", "wrong-token")
        page.click("#token-form button")
        page.click("#delete-all")
        expect(page.locator("#status")).to_contain_text("missing or invalid bearer token")
        assert dead_ids(QUEUE) == ids
        page.fill("#token-input", TOKEN)
        page.click("#token-form button")
        page.click("#delete-all")
        expect(page.locator("#status")).to_have_text(f"Dead letters of {QUEUE} deleted.")
        assert dead_ids(QUEUE) == []
    finally:
        empty(QUEUE)
