"""RabbitMQ or Redis away: 503 within 5 seconds, and nothing half-written (no record, no message, no key)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from fastapi.testclient import TestClient
from httpx import Response

from service.bootstrap import broker, store
from service.ops.services import Services
from service.store import keys
from service.store.connection import connect_redis
from service.store.job_store import JobStore
from tests.support.api_actors import QUEUE
from tests.support.api_server import free_port
from tests.support.services import services_on, serving


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts TCP connections (the kernel does, from the backlog) and never says a word: a hung broker."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def services_with_broker_at(port: int) -> Services:
    away = RabbitmqBroker(url=f"amqp://guest:guest@127.0.0.1:{port}/", confirm_delivery=True, max_priority=10)
    for name in broker.get_declared_actors():
        away.declare_actor(broker.get_actor(name))
    return services_on(away, store)  # its RabbitMQ link has the 4 s deadline of the real one


def use(services: Services) -> Iterator[TestClient]:
    with serving(services) as client:
        yield client


@pytest.fixture(params=["refused", "silent"])
def broker_away(request: pytest.FixtureRequest, silent_port: int) -> Iterator[TestClient]:
    yield from use(services_with_broker_at(free_port() if request.param == "refused" else silent_port))


@pytest.fixture
def store_away() -> Iterator[TestClient]:
    # Built as the composition root builds the real one, so its timeouts and retries are the ones in production.
    yield from use(services_on(broker, JobStore(connect_redis(f"redis://127.0.0.1:{free_port()}/0"))))


def held_messages() -> int:
    return int(broker.channel.queue_declare(QUEUE, passive=True).method.message_count)


def timed_in_parallel(client: TestClient, requests: list[tuple[str, str, object]]) -> list[tuple[Response, float]]:
    """Every request at once (each waits out its own deadline), each with how long it took."""

    def send(request: tuple[str, str, object]) -> tuple[Response, float]:
        method, path, body = request
        started = time.monotonic()
        response = client.request(method, path, json=body) if body is not None else client.request(method, path)
        return response, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(send, requests))


def test_with_rabbitmq_away_enqueue_is_503_within_5_seconds_and_leaves_no_record(
    broker_away: TestClient, empty_held_queue: str
) -> None:
    started = time.monotonic()
    response = broker_away.post("/jobs/held", json={"key": "x"}, headers={"Idempotency-Key": "while-down"})
    assert time.monotonic() - started < 5
    assert response.status_code == 503, response.text
    assert response.json() == {"detail": "rabbitmq unreachable; try again shortly"}
    assert response.headers["Retry-After"] == "5"
    assert store.count() == 0
    assert store.client.get(keys.idempotency("held:while-down")) is None  # the key is free for the retry


def test_with_rabbitmq_away_batch_purge_and_queues_are_503_within_5_seconds(
    broker_away: TestClient, empty_held_queue: str
) -> None:
    requests: list[tuple[str, str, object]] = [
        ("POST", "/jobs/held/batch", [{"key": "a"}, {"key": "b"}]),
        ("POST", "/jobs/held?delay=1000", {"key": "c"}),
        ("POST", f"/queues/{QUEUE}/purge", None),
        ("GET", "/queues", None),
    ]
    for (_, path, _), (response, took) in zip(requests, timed_in_parallel(broker_away, requests), strict=True):
        assert response.status_code == 503, (path, response.text)
        assert took < 5, path
    assert store.count() == 0


@pytest.fixture
def dead_letters_away(broker_away: TestClient) -> TestClient:
    """The dead-letter routes: broker_away's service object builds its dead letters on the same unreachable link."""
    return broker_away


def test_with_rabbitmq_away_dead_letter_routes_are_503_within_5_seconds(
    dead_letters_away: TestClient, empty_held_queue: str
) -> None:
    requests: list[tuple[str, str, object]] = [
        ("GET", f"/queues/{QUEUE}/dead", None),
        ("POST", f"/queues/{QUEUE}/dead/requeue", {"jobIds": ["some-id"]}),
        ("POST", f"/queues/{QUEUE}/dead/requeue", None),
        ("POST", f"/queues/{QUEUE}/dead/delete", {"jobIds": ["some-id"]}),
        ("POST", f"/queues/{QUEUE}/dead/delete", None),
    ]
    for (_, path, body), (response, took) in zip(requests, timed_in_parallel(dead_letters_away, requests), strict=True):
        assert response.status_code == 503, (path, body, response.text)
        assert response.json() == {"detail": "rabbitmq unreachable; try again shortly"}
        assert took < 5, (path, body)
    assert store.client.get(keys.lock(f"dead-requeue:{QUEUE}")) is None  # no "requeue all" was left claimed


def test_with_redis_away_every_route_is_503_within_5_seconds_and_nothing_is_published(
    store_away: TestClient, empty_held_queue: str
) -> None:
    requests: list[tuple[str, str, object]] = [
        ("POST", "/jobs/held", {"key": "x"}),
        ("POST", "/jobs/held/batch", [{"key": "x"}]),
        ("GET", "/jobs", None),
        ("GET", "/jobs/some-id", None),
        ("DELETE", "/jobs/some-id", None),
        ("POST", "/jobs/some-id/retry", None),
        ("GET", "/queues", None),
        ("POST", f"/queues/{QUEUE}/purge", None),
    ]
    for (_, path, _), (response, took) in zip(requests, timed_in_parallel(store_away, requests), strict=True):
        assert response.status_code == 503, (path, response.text)
        assert response.json() == {"detail": "redis unreachable; try again shortly"}
        assert took < 5, path
    assert held_messages() == 0


def test_with_rabbitmq_away_readyz_names_it_within_5_seconds(broker_away: TestClient) -> None:
    started = time.monotonic()
    response = broker_away.get("/readyz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503, response.text
    assert response.json()["down"] == ["rabbitmq"]


def test_with_redis_away_readyz_names_it_within_5_seconds(store_away: TestClient) -> None:
    started = time.monotonic()
    response = store_away.get("/readyz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503, response.text
    assert response.json()["down"] == ["redis"]
