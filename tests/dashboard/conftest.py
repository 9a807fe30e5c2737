"""A real web process and headless Debian Chromium (driven by Playwright, never its own browser download)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.support.web import WebProcess

CHROMIUM = "/usr/bin/chromium"
TOKEN = "dashboard-test-token"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--mute-audio",
]


@pytest.fixture(scope="session")
def web() -> Iterator[WebProcess]:
    """The dashboard and API with API_TOKEN empty: open."""
    with WebProcess(env={"API_TOKEN": ""}) as process:
        yield process


@pytest.fixture(scope="session")
def token_web() -> Iterator[WebProcess]:
    """The same with API_TOKEN set: every action needs the token."""
    with WebProcess(env={"API_TOKEN": TOKEN}) as process:
        yield process


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not shutil.which(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} is missing; run `make browser` (apt-get install chromium)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
