"""A job's key on the dashboard: on its page and in its row of the job list, linking to the list of that key's jobs,
escaped whatever characters it holds."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, expect

from service.domain import job_key
from service.ops.jobs import Jobs
from tests.support.records import put_record
from tests.support.web import WebProcess

#: A key may hold any printable character: these must neither break the link nor the page.
KEY = 'acme & "co" <b>/1?x=#'
_KEY_LINK = re.compile(r'<a class="key" href="([^"]*)"[^>]*>([^<]*)</a>')


@pytest.fixture
def client(web: WebProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web.url, timeout=10) as http:
        yield http


def key_links(fragment: str) -> list[tuple[str, str]]:
    """(the key the link's ?key= names, the text shown) of each key link, both unescaped as a browser reads them."""
    found = []
    for href, text in _KEY_LINK.findall(fragment):
        target = urlsplit(html.unescape(href))
        assert target.path == "/dashboard/jobs", href
        found.append((parse_qs(target.query)["key"][0], html.unescape(text)))
    return found


def test_the_job_page_shows_the_key_linking_to_its_jobs(client: httpx.Client, jobs: Jobs) -> None:
    keyed, unkeyed = put_record(key=KEY), put_record()
    page = client.get(f"/dashboard/jobs/{keyed}")
    assert page.status_code == 200
    facts = page.text.split('<dl class="facts">', 1)[1].split("</dl>", 1)[0]
    assert "<dt>Key</dt>" in facts
    assert key_links(facts) == [(KEY, KEY)]
    assert "<b>" not in page.text  # shown as text, not markup
    assert "<dt>Key</dt>" not in client.get(f"/dashboard/jobs/{unkeyed}").text


def test_each_row_of_the_job_list_shows_its_key_linking_to_its_jobs(client: httpx.Client, jobs: Jobs) -> None:
    keyed, unkeyed = put_record(key=KEY), put_record()
    page = client.get("/dashboard/jobs")
    assert page.status_code == 200
    header = page.text.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert ">Key</th>" in header
    rows = dict(re.findall(r'<tr data-job-id="([^"]+)">(.*?)</tr>', page.text, re.S))
    assert key_links(rows[keyed]) == [(KEY, KEY)]
    assert key_links(rows[unkeyed]) == []


@pytest.mark.browser
def test_a_longest_key_fits_a_phone_and_its_link_opens_the_list_of_its_jobs(web: WebProcess, browser: Browser) -> None:
    key = "tenant-" + "x" * (job_key.KEY_MAX - len("tenant-"))
    job_id = put_record(key=key)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(f"{web.url}/dashboard/jobs")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        in_row = page.locator(f'tr[data-job-id="{job_id}"] a.key')
        assert in_row.evaluate("a => a.scrollWidth > a.clientWidth")  # its start shown, cut with an ellipsis
        page.goto(f"{web.url}/dashboard/jobs/{job_id}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.locator("#job-key a.key").click()
        expect(page).to_have_url(f"{web.url}/dashboard/jobs?key={key}")
    finally:
        context.close()
