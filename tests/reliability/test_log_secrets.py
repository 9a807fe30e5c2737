"""No secret reaches a log line: a worker with every secret set, through broker cuts and failures, is grepped."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from service.ops.jobs import Jobs
from tests.reliability.harness import Fleet, proxies, wait_for, worker_env
from tests.support import isolation
from tests.support.chaos_actors import tally, tally_client, tally_key

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

PASSWORD = f"pw-{uuid.uuid4().hex[:12]}"
USER = f"reliability-{uuid.uuid4().hex[:6]}"
#: What Dramatiq's consumer logs when its broker connection drops.
CONNECTION_ERROR = "Consumer encountered a connection error"

SECRETS = {
    "API_TOKEN": f"tok-{uuid.uuid4().hex}",
    "SMTP_PASSWORD": f"smtp-{uuid.uuid4().hex[:12]}",
    "WEBHOOK_SIGNING_SECRET": f"whk-{uuid.uuid4().hex[:16]}",
    "HOOKS_SIGNING_SECRET": "whsec_" + base64.b64encode(uuid.uuid4().bytes).decode(),
}


@pytest.fixture
def broker_user() -> Iterator[str]:
    """A RabbitMQ user of our own, so that the broker URL carries a password worth hiding."""
    vhost = urlsplit(os.environ["RABBITMQ_URL"]).path.lstrip("/")
    isolation._rabbitmqctl("add_user", USER, PASSWORD)
    isolation._rabbitmqctl("set_permissions", "-p", vhost, USER, ".*", ".*", ".*")
    yield vhost
    isolation._rabbitmqctl("delete_user", USER)


def test_no_secret_appears_in_any_log_line_of_a_worker(jobs: Jobs, broker_user: str) -> None:
    run = uuid.uuid4().hex[:8]
    with proxies(5672) as (rabbit,):
        url = f"amqp://{USER}:{PASSWORD}@127.0.0.1:{rabbit.port}/{broker_user}?heartbeat=5"
        env = {**worker_env(), **SECRETS, "RABBITMQ_URL": url, "LOG_LEVEL": "DEBUG", "LOG_FORMAT": "json"}
        with Fleet(1, threads=2, env=env) as fleet:
            for _ in range(20):
                tally.send(run=run, ms=0)
            assert wait_for(lambda: tally_client.llen(tally_key(run, "done")) >= 20, timeout=30) is not None
            rabbit.down()  # connection errors get logged, with the broker's URL in some of them
            # The situation: the worker noticed the cut and logged it (the grep below has something to look at).
            seen = wait_for(lambda: CONNECTION_ERROR in fleet.logs(), timeout=20)
            assert seen is not None, fleet.logs()[-3000:]
            rabbit.up()
            for _ in range(20):
                tally.send(run=run, ms=0)
            assert wait_for(lambda: tally_client.llen(tally_key(run, "done")) >= 40, timeout=60) is not None
        logs = fleet.logs()
    assert CONNECTION_ERROR in logs
    for name, secret in [*SECRETS.items(), ("broker password", PASSWORD)]:
        assert secret not in logs, f"{name} leaked into a worker log"
