"""Redaction where it was found missing live: a failed job's stored failedReason, lastError and traceback, secrets in
their JSON-escaped forms, and REDIS_PASSWORD against a real Redis that requires it (connection errors included)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.web import app
from tests.support import secret_actors  # noqa: F401  (the test process enqueues its job)
from tests.support.api_server import free_port
from tests.support.cli import run_jobs
from tests.support.workers import ROOT, WorkerProcess


def escaping_secret(prefix: str) -> str:
    """A secret that JSON escapes: a quote, a backslash and a non-ASCII letter, then random characters."""
    return f'{prefix}"q\\u-\u00e9-{secrets.token_hex(6)}'


def written_forms(secret: str) -> dict[str, str]:
    """How a secret looks once written into a log line or a stored text."""
    return {
        "raw": secret,
        "JSON": json.dumps(secret)[1:-1],
        "JSON, non-ASCII kept": json.dumps(secret, ensure_ascii=False)[1:-1],
        "URL-encoded": quote(secret, safe=""),
        "tail": secret[-12:],  # the random part alone: no piece of it survives either
    }


def assert_nowhere(secret: str, texts: dict[str, str]) -> None:
    for where, text in texts.items():
        for form, written in written_forms(secret).items():
            assert written not in text, f"the {form} form of a secret ({secret[:4]}...) appears in {where}"


def test_a_failed_jobs_reason_last_error_and_traceback_are_stored_and_shown_redacted(jobs: Jobs) -> None:
    smtp_password, url_password = escaping_secret("smtp"), f"urlpw-{secrets.token_hex(6)}"
    env = {"SMTP_PASSWORD": smtp_password, "TEST_URL_PASSWORD": url_password, "LOG_FORMAT": "json"}
    worker = WorkerProcess(processes=1, threads=2, queues=["secrets"], modules=["tests.support.secret_actors"], env=env)
    with worker:
        job_id = jobs.enqueue("leak_secrets", {"key": "stored"}).job_id
        record = jobs.wait(job_id, timeout_s=30)
    # The situation was reached: the job failed twice (a retry, then for good) with its error quoting the secrets.
    assert record.state is JobState.FAILED and record.attempts == 2, record
    reason, trace = record.failedReason or "", record.traceback or ""
    assert reason.startswith("RuntimeError: stored: upstream answered {")
    assert '"smtp": "***"' in reason and "https://svc:***@api.example.com/v1" in reason and "raw: ***" in reason
    assert "RuntimeError: stored: upstream answered" in trace and '"smtp": "***"' in trace
    retried = [entry.error for entry in record.history if entry.error]
    assert retried and retried[0].startswith("RuntimeError: stored:") and "svc:***@" in retried[0], record.history
    with TestClient(app) as client:
        shown = client.get(f"/jobs/{job_id}")
    assert shown.status_code == 200
    cli = run_jobs("show", job_id)  # the reason and the whole traceback, as text
    assert cli.code == 0, cli.err
    assert "svc:***@api.example.com" in cli.out and "Traceback (most recent call last)" in cli.out
    texts = {"GET /jobs/{id}": shown.text, "jobs show": cli.out}
    texts["the worker's JSON log"] = worker.output()
    assert '\\"smtp\\": \\"***\\"' in worker.output()  # the escaped form reached the log and was redacted there
    for secret in (smtp_password, url_password):
        assert_nowhere(secret, texts)


# -- REDIS_PASSWORD against a Redis of the test's own -----------------------------------------------------------------


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[tuple[int, str, subprocess.Popen[bytes]]]:
    """A redis-server on a free port requiring a password that JSON escapes; stopped at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    port, password = free_port(), escaping_secret("redispw")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password, "--save", ""]
    command += ["--appendonly", "no", "--dir", str(tmp_path)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode != 0:
            assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port, password, server
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(10)


def start_web(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "tests.support.secret_app:app", "--host", "127.0.0.1"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(log.read_text()[-3000:])
        time.sleep(0.1)


@pytest.mark.slow
def test_redis_password_never_appears_in_a_log_line_of_a_worker_or_web_process_even_when_redis_is_gone(
    redis_with_password: tuple[int, str, subprocess.Popen[bytes]],
) -> None:
    port, password, server = redis_with_password
    env = {
        "REDIS_URL": "",  # the seed's variables make the URL up, with the password quoted into it
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(port),
        "REDIS_PASSWORD": password,
        "REDIS_DB": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "TEST_URL_PASSWORD": "unused",
    }
    web_log = Path(tempfile.mkstemp(prefix="web-", suffix=".log")[1])
    worker = WorkerProcess(processes=1, threads=2, queues=["secrets"], modules=["tests.support.secret_actors"], env=env)
    with worker:
        web, url = start_web(env, web_log)
        try:
            sent = httpx.post(f"{url}/jobs/leak_secrets", json={"key": "redis"})
            assert sent.status_code == 202, sent.text
            job_id = sent.json()["jobId"]
            deadline = time.monotonic() + 30
            while (shown := httpx.get(f"{url}/jobs/{job_id}")).json()["state"] != "failed":
                assert time.monotonic() < deadline, shown.text
                time.sleep(0.1)
            assert '"redis": "***"' in shown.json()["failedReason"]  # the job quoted the password; stored redacted
            cli = run_jobs("show", job_id, env=env)
            assert cli.code == 0, cli.err
            server.send_signal(signal.SIGKILL)  # now Redis goes away: connection errors in both processes
            server.wait(10)
            assert httpx.get(f"{url}/readyz").status_code == 503
            gone = httpx.get(f"{url}/jobs/{job_id}")
            assert gone.status_code >= 500
            deadline = time.monotonic() + 20
            while "job store unreachable" not in worker.output():  # the worker met the outage and logged it
                assert time.monotonic() < deadline, worker.output()[-3000:]
                time.sleep(0.2)
            unreachable = run_jobs("-v", "show", job_id, env=env)
            assert unreachable.code != 0
        finally:
            web.terminate()
            web.wait(15)
            worker.kill()  # its log is written; a graceful stop would wait for Redis first
    logs = {"worker": worker.output(), "web": web_log.read_text(), "cli": cli.out + cli.err + unreachable.err}
    assert "Connection refused" in logs["web"] + logs["cli"], logs["web"][-3000:] + logs["cli"]
    assert_nowhere(password, logs)
