"""The real jobs run in a RabbitMQ vhost of their own, so each test module starts workers with the settings it needs
(SMTP server, reports directory, ...) without the session-wide worker taking their messages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from service.bootstrap import build_broker, pauses, redis_client, settings, store
from service.worker.typed_actor import TypedActor
from tests.support import isolation
from tests.support.http_receiver import Receiver
from tests.support.smtp import SmtpServer
from tests.support.workers import WorkerProcess

QUEUES = ["email", "webhooks", "reports", "maintenance"]
#: A Standard Webhooks secret for the tests only (whsec_ + base64 of 24 random bytes).
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class PrivateLane:
    """A vhost with a sender of its own; workers started from here consume only it."""

    def __init__(self, vhost: str) -> None:
        self.vhost = vhost
        self.url = f"amqp://guest:guest@{isolation.HOST}:5672/{vhost}"
        self.broker: RabbitmqBroker = build_broker(
            settings.model_copy(update={"rabbitmq_url": self.url}), redis_client, store, pauses
        )
        self.env: dict[str, str] = {"RABBITMQ_URL": self.url}

    def send(self, actor: TypedActor, /, **payload: Any) -> str:
        """Like actor.send(), validated, but into this vhost. Message options go in `options`."""
        options = payload.pop("options", {})
        message = actor.message_with_options(kwargs=payload, **options)
        self.broker.enqueue(message)
        return str(message.message_id)

    def send_raw(self, actor_name: str, queue: str, kwargs: dict[str, Any]) -> str:
        """What a foreign Dramatiq client publishes: no validation on our side."""
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue, actor_name=actor_name, args=(), kwargs=kwargs, options={}
        )
        self.broker.enqueue(message)
        return str(message.message_id)

    def worker(
        self, env: dict[str, str] | None = None, threads: int = 4, queues: list[str] | None = None
    ) -> WorkerProcess:
        return WorkerProcess(processes=1, threads=threads, queues=queues or QUEUES, env={**self.env, **(env or {})})


@pytest.fixture(scope="session")
def lane() -> Iterator[PrivateLane]:
    vhost = isolation.create_vhost()
    private = PrivateLane(vhost)
    try:
        yield private
    finally:
        private.broker.close()
        isolation.delete_vhost(vhost)


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture(scope="session")
def reports_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="session")
def job_env(smtp_server: SmtpServer, reports_dir: Path) -> dict[str, str]:
    """The settings every worker of these tests runs with."""
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_server.port),
        "EMAIL_FROM": "Job service <jobs@example.org>",
        "REPORTS_DIR": str(reports_dir),
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "WEBHOOK_SIGNING_SECRET": SIGNING_SECRET,
    }


@pytest.fixture(scope="module")
def jobs_worker(lane: PrivateLane, job_env: dict[str, str]) -> Iterator[WorkerProcess]:
    """One worker for the module's tests, consuming the four job queues of the private vhost."""
    with lane.worker(job_env, threads=8) as process:
        yield process
