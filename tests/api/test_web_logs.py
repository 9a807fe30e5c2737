"""What the web process logs: uvicorn's own lines (access log, 500 tracebacks) are redacted like the service's, one
JSON line each with LOG_FORMAT=json; and a line cut to its length limit never shows part of a secret."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from service import logs
from tests.support.web import WebProcess

#: Non-ASCII and quotes: it is escaped in a JSON line, and percent-encoded in a URL.
TOKEN = 'wéb-lög-"token"-7f3a9c'
#: Not registered anywhere: only its parameter's name says it is secret.
GUESS = "guessed-token-c0ffee"


@pytest.fixture(scope="module")
def json_web() -> Iterator[WebProcess]:
    """A web process as deployed: LOG_FORMAT=json, uvicorn's default access log, a token set."""
    env = {"API_TOKEN": TOKEN, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    with WebProcess(env=env, app="tests.support.failing_app:app") as process:
        yield process


def visits(web: WebProcess) -> list[httpx.Response]:
    url = web.url
    return [
        httpx.get(f"{url}/healthz", params={"api_token": TOKEN}, timeout=5),
        httpx.get(f"{url}/jobs", params={"api_token": GUESS, "limit": "1"}, timeout=5),
        httpx.get(f"{url}/jobs/{quote(TOKEN, safe='')}", timeout=5),
        httpx.get(f"{url}/test/raise", params={"note": TOKEN}, timeout=5),
    ]


def secret_forms(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), json.dumps(secret)[1:-1], secret.encode("unicode_escape").decode()]


def test_uvicorn_access_lines_and_500_tracebacks_are_redacted_single_json_lines(json_web: WebProcess) -> None:
    answers = visits(json_web)
    assert [a.status_code for a in answers] == [200, 200, 404, 500]
    json_web.stop()  # the shutdown lines are uvicorn's too
    output = json_web.output()
    lines = [json.loads(line) for line in output.splitlines()]  # every line is JSON: this raises otherwise
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert len(access) >= 4 and any("/healthz?api_token=***" in line["msg"] for line in access), access
    assert any("/jobs?api_token=***&limit=1" in line["msg"] for line in access), access  # GUESS: by its name
    errors = [line for line in lines if line["logger"] == "uvicorn.error" and "exc" in line]
    assert len(errors) == 1 and "RuntimeError: a bug, with a secret in its message: ***" in errors[0]["exc"]
    for secret in (TOKEN, GUESS):
        for form in secret_forms(secret):
            assert form not in output, form


def test_a_web_process_without_access_log_stays_without_it() -> None:
    with WebProcess(extra_args=["--no-access-log"], env={"LOG_FORMAT": "json"}) as web:
        assert httpx.get(f"{web.url}/healthz", timeout=5).status_code == 200
    assert "uvicorn.access" not in web.output()
    assert '"logger": "uvicorn.error"' in web.output()  # its other lines still come, as JSON


@pytest.fixture
def secret() -> str:
    value = "s3cr3t-" + "q" * 57  # 64 characters
    logs.register_secret(value)
    return value


def test_a_cut_line_never_shows_a_piece_of_a_secret(secret: str) -> None:
    # Secrets replaced before the cut shrink the text, which pulled a secret split by the first cut into view.
    limit = 100
    for before in range(0, 40):
        for filler in range(0, 130, 7):
            text = secret * before + "x" * filler + secret + "y" * 5000
            short = logs.shorten(text, limit)
            assert short.endswith(f"... ({len(text) - limit} more characters)")
            assert len(short.split("... (")[0]) <= limit
            assert secret[:6] not in short, (before, filler, short)


def test_a_cut_line_never_shows_a_piece_of_a_url_password() -> None:
    password = "p" * 200
    for filler in range(0, 1200, 13):
        text = "z" * filler + f" redis://user:{password}@host:6379/0 " + "w" * 9000
        assert "ppppp" not in logs.shorten(text, 100)
        assert "ppppp" not in logs.shorten(f"{'x' * 8000}redis://user:{password}@h/0", 8000)
