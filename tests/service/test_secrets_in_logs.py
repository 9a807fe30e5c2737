"""Secrets never reach a log line: the worker, the web process and the CLI are run for real with distinctive test
secrets (a RabbitMQ user's password, API_TOKEN, SMTP_PASSWORD, signing secrets) at DEBUG level, made to log their
configuration, run and fail jobs, refuse a bad token and meet an unreachable broker; then their logs are grepped."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.support import isolation, ops_actors  # noqa: F401
from tests.support.api_server import free_port
from tests.support.cli import run_jobs
from tests.support.workers import ROOT, WorkerProcess


def _whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@pytest.fixture
def secret_env() -> Iterator[dict[str, str]]:
    """Variables holding secrets, and a RabbitMQ user of this test's own whose password is one of them."""
    vhost = urlsplit(os.environ["RABBITMQ_URL"]).path.lstrip("/")
    user, password = f"jobs-test-{secrets.token_hex(4)}", f"amqp-pw-{secrets.token_hex(8)}"
    isolation._rabbitmqctl("add_user", user, password)
    isolation._rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    try:
        yield {
            "RABBITMQ_URL": f"amqp://{user}:{password}@127.0.0.1:5672/{vhost}",
            "API_TOKEN": f"tok-{secrets.token_hex(12)}",
            "SMTP_PASSWORD": f"smtp-pw-{secrets.token_hex(8)}",
            "WEBHOOK_SIGNING_SECRET": _whsec(),
            "HOOKS_SIGNING_SECRET": _whsec(),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",
        }
    finally:
        isolation._rabbitmqctl("delete_user", user)


def the_secrets(env: dict[str, str]) -> list[str]:
    found = [urlsplit(env["RABBITMQ_URL"]).password or "", env["API_TOKEN"], env["SMTP_PASSWORD"]]
    for name in ("WEBHOOK_SIGNING_SECRET", "HOOKS_SIGNING_SECRET"):
        found += [env[name], env[name].removeprefix("whsec_")]
    return found


def run_web(env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "tests.support.ops_app:app", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(15)


@pytest.mark.slow
def test_no_secret_appears_in_the_logs_of_a_worker_the_web_process_or_the_cli(
    jobs: Jobs, secret_env: dict[str, str]
) -> None:
    web_log = Path(tempfile.mkstemp(prefix="web-", suffix=".log")[1])
    worker = WorkerProcess(processes=1, threads=2, queues=["ops"], modules=["tests.support.ops_actors"], env=secret_env)
    with worker:
        for url in run_web(secret_env, web_log):
            token = {"Authorization": f"Bearer {secret_env['API_TOKEN']}"}
            sent = httpx.post(f"{url}/jobs/ops_step", json={"key": "secrets", "seconds": 0.05}, headers=token)
            assert sent.status_code == 202, sent.text
            doomed = httpx.post(f"{url}/jobs/ops_doomed", json={"key": "secrets"}, headers=token)
            assert doomed.status_code == 202
            refused = httpx.post(f"{url}/jobs/ops_step", json={"key": "x"}, headers={"Authorization": "Bearer nope"})
            assert refused.status_code == 401
            assert httpx.get(f"{url}/metrics").status_code == 200
            assert jobs.wait(sent.json()["jobId"], timeout_s=20).state is JobState.COMPLETED
            assert jobs.wait(doomed.json()["jobId"], timeout_s=20).state is JobState.FAILED
    cli = run_jobs("-v", "list", "--limit", "2", env=secret_env)
    assert cli.code == 0, cli.err
    user = urlsplit(secret_env["RABBITMQ_URL"]).username
    bad_url = {**secret_env, "RABBITMQ_URL": secret_env["RABBITMQ_URL"].replace("127.0.0.1:5672", "127.0.0.1:1")}
    unreachable = run_jobs("-v", "send", "ping", "{}", env=bad_url)
    assert unreachable.code == 4

    logs = {"worker": worker.output(), "web": web_log.read_text(), "cli": cli.err + cli.out + unreachable.err}
    for name, text in logs.items():
        for secret in the_secrets(secret_env):
            assert secret not in text, f"a secret ({secret[:6]}...) appears in the {name} logs"
    # The configuration was logged, so the redaction was put to work rather than nothing being written.
    for name in ("worker", "web"):
        assert f"amqp://{user}:***@127.0.0.1" in logs[name], name
        assert '\\"api_token\\": \\"***\\"' in logs[name] or "'api_token': '***'" in logs[name], name


@pytest.mark.slow
def test_worker_log_lines_are_json_and_lines_inside_a_job_name_it(jobs: Jobs) -> None:
    env = {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    worker = WorkerProcess(processes=1, threads=2, queues=["ops"], modules=["tests.support.ops_actors"], env=env)
    with worker:
        job_id = jobs.enqueue("ops_doomed", {"key": "json-logs"}).job_id
        jobs.wait(job_id, timeout_s=20)
    ours = [line for line in worker.output().splitlines() if line.startswith("{")]
    assert ours, worker.output()
    records = [json.loads(line) for line in ours]  # every line our handler wrote is one JSON object
    inside = [r for r in records if r.get("job_id") == job_id]
    assert inside, records
    for record in inside:
        assert record["actor"] == "ops_doomed" and record["queue"] == "ops" and record["attempt"] == 1
        assert {"ts", "level", "logger", "msg"} <= set(record)
    assert any(r["msg"].startswith("job failed: PermanentError") for r in inside)
