"""Schemathesis drives every API route from /openapi.json: no 5xx, and every answer matches the document."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pika.exceptions
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.bootstrap import broker
from service.web import app
from service.web.routes.hooks import hook_settings

#: Small enough that the whole run stays well under a minute on a shared 2-core machine.
MAX_EXAMPLES = 12
#: The job API and its neighbours; the dashboard pages and the SSE stream are exercised by their own tests.
API_PATHS = r"^/(jobs|queues|hooks|healthz|readyz|workers)"

schema = (
    schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex=API_PATHS).exclude(path_regex="/events$")
)


@pytest.fixture(scope="module", autouse=True)
def empty_queues_after() -> Iterator[None]:
    """The generated requests enqueue hundreds of jobs; a session worker of this process would still be running them
    during the next module's tests."""
    yield
    for queue in sorted(broker.get_declared_queues()):
        try:
            broker.flush(queue)
        except pika.exceptions.AMQPChannelError:  # a queue this run never created: RabbitMQ closed the channel
            del broker.channel


@pytest.fixture(autouse=True)
def signing_secret() -> Iterator[None]:
    # With hooks on, a fuzzed hook request must be refused with 401, never fall over.
    saved = hook_settings.hooks_signing_secret
    hook_settings.hooks_signing_secret = "whsec_" + base64.b64encode(b"schemathesis-secret").decode()
    yield
    hook_settings.hooks_signing_secret = saved


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_answers_every_generated_request_as_its_openapi_document_says(case: schemathesis.Case) -> None:
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
        ]
    )
