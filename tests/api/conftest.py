"""The API under test: in-process through Starlette's TestClient, or a real uvicorn, on the real RabbitMQ/Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.bootstrap import broker
from service.web import app
from tests.support import api_actors
from tests.support.api_server import api_server


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def empty_held_queue() -> Iterator[str]:
    """The held queue (no worker consumes it unless a test starts one), emptied before and after."""
    broker.declare_queue(api_actors.QUEUE, ensure=True)
    broker.flush(api_actors.QUEUE)
    yield api_actors.QUEUE
    broker.flush(api_actors.QUEUE)


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
    """A real `uvicorn` process serving the API (with the test jobs)."""
    with api_server() as url:
        yield url
