"""The README's "From another service" snippet, run as it is by a process that cannot import this package, against a
real worker; and the worker's one line when a queue was declared by a client with Dramatiq's defaults."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from service.bootstrap import build_broker, pauses, redis_client, settings, store
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.rabbit.link import QueueMismatch
from tests.support import isolation
from tests.support.smtp import SmtpServer
from tests.support.workers import ROOT, WorkerProcess

#: What the worker logs when a plain client with Dramatiq's defaults declared "email" first.
MISMATCH = (
    "queue 'email' exists with x-max-priority=none but this service declares it with x-max-priority=10: declare it "
    "with RabbitmqBroker(..., max_priority=10), or delete it once it holds nothing you need "
    "(rabbitmqctl delete_queue -p {vhost} email) and the worker declares it again"
)


def readme_snippet() -> str:
    """The python block of the README's "From another service" section that sets up a plain Dramatiq broker."""
    section = (ROOT / "README.md").read_text().split("## From another service", 1)[1].split("\n## ", 1)[0]
    [snippet] = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "RabbitmqBroker(" in b]
    return snippet


@pytest.fixture
def vhost() -> Iterator[str]:
    """A vhost of its own, so that no queue exists before the foreign client declares one."""
    name = isolation.create_vhost()
    try:
        yield name
    finally:
        isolation.delete_vhost(name)


def url_of(vhost: str) -> str:
    return f"amqp://guest:guest@{isolation.HOST}:5672/{vhost}"


def ready_messages(vhost: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url_of(vhost)))
    try:
        return int(connection.channel().queue_declare(queue=queue, passive=True).method.message_count)
    finally:
        connection.close()


def test_the_readme_snippet_sends_a_job_from_a_process_without_this_package_and_a_worker_runs_it(
    jobs: Jobs, vhost: str, smtp_server: SmtpServer, job_env: dict[str, str], tmp_path: Path
) -> None:
    # Only the installed libraries: no site module (so the editable install of this package is not loaded), run
    # from a folder of its own.
    script = tmp_path / "sender.py"
    script.write_text(
        "import importlib.util, sys\n"
        "assert importlib.util.find_spec('service') is None and importlib.util.find_spec('actors') is None, sys.path\n"
        + readme_snippet()
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": sysconfig.get_paths()["purelib"], "RABBITMQ_URL": url_of(vhost)}
    sent = subprocess.run(
        [sys.executable, "-S", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert sent.returncode == 0, sent.stderr
    job_id = sent.stdout.strip()
    # The foreign client declared the queue first: a worker must still start on it.
    assert ready_messages(vhost, "email") == 1

    worker_env = {**job_env, "RABBITMQ_URL": url_of(vhost)}
    with WorkerProcess(processes=1, threads=2, queues=["email"], env=worker_env) as worker:
        record = jobs.wait(job_id, timeout_s=20)
        assert record.state is JobState.COMPLETED, (record.failedReason, worker.output()[-2000:])
    assert (record.actor, record.queue, record.data) == (
        "send_email",
        "email",
        {"to": "ada@example.com", "subject": "Hi", "text": "Hello"},
    )
    received = smtp_server.handler.wait_for(f"<{job_id}@example.org>")
    assert received.rcpt_tos == ["ada@example.com"]
    assert "exists with" not in worker.output()


def test_a_worker_names_the_fix_when_a_plain_client_with_dramatiq_defaults_declared_the_queue_first(
    vhost: str, job_env: dict[str, str]
) -> None:
    plain = RabbitmqBroker(url=url_of(vhost))  # Dramatiq's defaults: no max_priority
    try:
        plain.declare_queue("email", ensure=True)
    finally:
        plain.close()

    worker_env = {**job_env, "RABBITMQ_URL": url_of(vhost)}
    expected = MISMATCH.format(vhost=vhost)
    with WorkerProcess(processes=1, threads=2, queues=["email"], env=worker_env) as worker:
        deadline = time.monotonic() + 20
        while expected not in worker.output():
            assert time.monotonic() < deadline, worker.output()[-3000:]
            time.sleep(0.2)
    lines = [line for line in worker.output().splitlines() if "exists with" in line]
    assert all(line.endswith(expected) for line in lines), lines


def test_declaring_a_queue_that_exists_without_a_priority_raises_one_line_naming_the_fix(vhost: str) -> None:
    plain = RabbitmqBroker(url=url_of(vhost))
    service_broker = build_broker(
        settings.model_copy(update={"rabbitmq_url": url_of(vhost)}), redis_client, store, pauses
    )
    try:
        plain.declare_queue("email", ensure=True)
        with pytest.raises(QueueMismatch) as raised:
            service_broker.declare_queue("email", ensure=True)
        assert str(raised.value) == MISMATCH.format(vhost=vhost)
        # Deleted as the line says, the queue is declared again with the service's arguments.
        plain.channel.queue_delete("email")
        plain.channel.queue_delete("email.DQ")
        service_broker.declare_queue("email", ensure=True)
        assert ready_messages(vhost, "email") == 0
    finally:
        plain.close()
        service_broker.close()
