"""A web process without API_TOKEN says at start that it is open, and refuses to start open on an address other
machines can reach unless API_OPEN=true."""

from __future__ import annotations

import pytest

from service.web.exposure import Bind, uvicorn_bind
from tests.support.web import WebProcess

OPEN_WARNING = "API_TOKEN is empty: the API is open"
REFUSAL = "refusing to start: API_TOKEN is empty and the web process listens on 0.0.0.0"


def web(env: dict[str, str], host: str) -> WebProcess:
    # The last --host wins, for uvicorn as for the check: WebProcess itself passes 127.0.0.1 first.
    return WebProcess(env=env, extra_args=["--host", host])


def test_an_open_api_on_every_address_refuses_to_start_with_one_line_and_status_2() -> None:
    process = web({"API_TOKEN": "", "API_OPEN": "false"}, "0.0.0.0")
    try:
        with pytest.raises(RuntimeError, match="web process exited with 2"):
            process.start()
    finally:
        process.stop()
    lines = process.output().splitlines()
    assert lines == [
        REFUSAL + ", which other machines can reach; set API_TOKEN, bind 127.0.0.1, or set API_OPEN=true if an "
        "open API is meant"
    ]


@pytest.mark.parametrize(
    ("env", "host"),
    [({"API_TOKEN": "", "API_OPEN": "true"}, "0.0.0.0"), ({"API_TOKEN": "", "API_OPEN": "false"}, "127.0.0.1")],
    ids=["open-on-purpose", "loopback"],
)
def test_an_open_api_that_may_start_says_at_start_that_it_is_open(env: dict[str, str], host: str) -> None:
    with web({**env, "LOG_FORMAT": "console"}, host) as process:
        pass
    warnings = [line for line in process.output().splitlines() if OPEN_WARNING in line]
    assert len(warnings) == 1, process.output()
    assert "WARNING" in warnings[0] and f"reaches this web process on {host}" in warnings[0]


def test_with_a_token_the_api_starts_on_every_address_without_the_warning() -> None:
    with web({"API_TOKEN": "exposure-test-token", "API_OPEN": "false"}, "0.0.0.0") as process:
        pass
    assert OPEN_WARNING not in process.output()
    assert "exposure-test-token" not in process.output()


def test_the_bind_is_read_as_uvicorn_reads_its_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UVICORN_HOST", raising=False)
    assert uvicorn_bind(["/srv/.venv/bin/uvicorn", "service.web:app"]) == Bind("127.0.0.1", local=True)
    assert uvicorn_bind(["/usr/lib/python3/uvicorn/__main__.py", "a:app", "--host", "::1"]) == Bind("::1", local=True)
    assert uvicorn_bind(["uvicorn", "a:app", "--host", "localhost"]) == Bind("localhost", local=True)
    assert uvicorn_bind(["uvicorn", "a:app", "--host", "::"]) == Bind("::", local=False)
    assert uvicorn_bind(["uvicorn", "a:app", "--host", "10.0.0.5"]) == Bind("10.0.0.5", local=False)
    assert uvicorn_bind(["uvicorn", "a:app", "--host", "myhost.internal"]) == Bind("myhost.internal", local=False)
    assert uvicorn_bind(["uvicorn", "a:app", "--uds", "/run/web.sock"]) == Bind("unix:/run/web.sock", local=True)
    assert uvicorn_bind(["uvicorn", "a:app", "--fd", "3"]) == Bind("file descriptor 3", local=False)
    assert uvicorn_bind(["/usr/bin/pytest", "tests/api"]) is None  # not a uvicorn process: nothing to refuse
    monkeypatch.setenv("UVICORN_HOST", "0.0.0.0")
    assert uvicorn_bind(["uvicorn", "a:app"]) == Bind("0.0.0.0", local=False)
