"""The jobs page's search filters (key, actor, state, creation window, reason text) and its bulk form, as HTML; and in
headless Chromium, a bulk retry confirmed with its dry-run count ("Retry 3 jobs?") and followed to its end."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Dialog, Page, expect

from service.bootstrap import store
from service.domain.clock import iso_from_ms, now_ms
from service.domain.states import JobState
from tests.support.bulk_actors import QUEUE, recorded_jobs
from tests.support.graveyard import empty
from tests.support.web import WebProcess


@pytest.fixture(scope="module")
def bulk_web() -> Iterator[WebProcess]:
    """The dashboard with the bulk tests' job declared, open (no API_TOKEN)."""
    with WebProcess(app="tests.support.bulk_app:app", env={"API_TOKEN": ""}) as process:
        yield process


@pytest.fixture
def client(bulk_web: WebProcess) -> Iterator[httpx.Client]:
    empty(QUEUE)
    with httpx.Client(base_url=bulk_web.url, timeout=10) as http:
        yield http
    empty(QUEUE)


def shown_ids(page: str) -> set[str]:
    return set(re.findall(r'data-job-id="([^"]+)"', page))


def test_the_list_filters_by_key_window_and_reason_and_its_pages_keep_the_filters(client: httpx.Client) -> None:
    base = now_ms() - 60_000
    mine = recorded_jobs(
        30, JobState.FAILED, account="acme", reason="Mailbox FULL", created_ms=[base + i for i in range(30)]
    )
    recorded_jobs(3, JobState.FAILED, account="acme", reason="timeout", created_ms=base + 40)
    recorded_jobs(3, JobState.FAILED, account="other", reason="mailbox full", created_ms=base + 40)
    params = {"key": "acme", "reason": "mailbox", "createdAfter": iso_from_ms(base)}

    first = client.get("/dashboard/jobs", params=params)
    assert first.status_code == 200
    assert len(shown_ids(first.text)) == 25 and shown_ids(first.text) <= set(mine)
    assert 'name="key" value="acme"' in first.text and 'name="reason" value="mailbox"' in first.text
    older = html.unescape(first.text.split('rel="next" href="')[1].split('"')[0])
    assert "key=acme" in older and "reason=mailbox" in older and "createdAfter=" in older
    second = client.get(older)
    assert shown_ids(first.text) | shown_ids(second.text) == set(mine)
    # The bulk form acts on exactly this filter.
    form = html.unescape(first.text.split('id="bulk-form" data-filter="')[1].split('"')[0])
    assert json.loads(form) == {"key": "acme", "reason": "mailbox", "createdAfter": iso_from_ms(base)}


def test_a_bad_filter_is_a_422_naming_it_and_offers_no_bulk_action(client: httpx.Client) -> None:
    for params, words in (
        ({"createdAfter": "soon"}, "createdAfter must be an ISO 8601"),
        ({"createdAfter": "2025-02-01", "createdBefore": "2025-01-01"}, "createdBefore must be later"),
        ({"key": "a\tb"}, "key must be"),
    ):
        page = client.get("/dashboard/jobs", params=params)
        assert page.status_code == 422, params
        assert words in page.text, params
        assert 'id="bulk-form"' not in page.text


@pytest.mark.browser
def test_a_bulk_retry_is_confirmed_with_its_count_and_followed_to_its_end(
    bulk_web: WebProcess, client: httpx.Client, page: Page
) -> None:
    failed = recorded_jobs(3, JobState.FAILED, account="acme", reason="ConnectionResetError")
    recorded_jobs(2, JobState.FAILED, account="other", reason="ConnectionResetError")
    page.goto(f"{bulk_web.url}/dashboard/jobs")
    page.fill("#filters input[name=key]", "acme")
    page.fill("#filters input[name=reason]", "connectionreset")
    page.click("#filters button[type=submit]")
    expect(page.locator("#job-table tr[data-job-id]")).to_have_count(3)

    questions: list[str] = []

    def answer(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.dismiss() if len(questions) == 1 else dialog.accept()

    page.on("dialog", answer)
    page.select_option("#bulk-form select[name=action]", "retry")
    page.click("#bulk-form button[type=submit]")
    expect(page.locator("#bulk-form button[type=submit]")).to_be_enabled()
    assert questions == ["Retry 3 jobs?"]
    assert all(store.get(job_id).state is JobState.FAILED for job_id in failed)  # type: ignore[union-attr]

    page.click("#bulk-form button[type=submit]")  # asked again; this time yes
    expect(page.locator("#bulk-progress")).to_have_text("retry: 3 of 3 done, 3 retried (done).")
    assert questions == ["Retry 3 jobs?", "Retry 3 jobs?"]
    assert all(store.get(job_id).state is JobState.QUEUED for job_id in failed)  # type: ignore[union-attr]
    page.select_option("#bulk-form select[name=action]", "retry")
    page.click("#bulk-form button[type=submit]")
    expect(page.locator("#status")).to_have_text("No job to retry among the jobs these filters match.")
    assert len(questions) == 2
