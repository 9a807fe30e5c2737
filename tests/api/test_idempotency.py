"""Idempotency-Key: the first job's id for 24 h, even when 50 identical requests race; another payload is 422; never
the id of a first request whose publish failed."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from fastapi.testclient import TestClient

from service.bootstrap import broker, redis_client, store
from service.domain.states import JobState
from service.ops.jobs import Jobs, Unavailable
from service.rabbit.link import RabbitLink
from service.store import keys
from service.web import app
from service.web.deps import provide_jobs
from tests.support.api_actors import QUEUE
from tests.support.workers import WorkerProcess


def test_fifty_racing_identical_requests_get_one_job_that_runs_once(
    server: str, jobs: Jobs, worker: WorkerProcess
) -> None:
    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=server, timeout=20) as http:
            return http.post("/jobs/record_run", json={"key": "race"}, headers={"Idempotency-Key": "order-1234"})

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(post, range(50)))
    assert {r.status_code for r in responses} == {202}
    ids = {r.json()["jobId"] for r in responses}
    assert len(ids) == 1
    (job_id,) = ids
    assert all(r.headers["Location"] == f"/jobs/{job_id}" for r in responses)
    assert jobs.wait(job_id, timeout_s=15).state is JobState.COMPLETED
    assert jobs.store.count(actor="record_run") == 1
    assert redis_client.get("test:runs:race") == "1"


def test_the_same_key_again_returns_the_first_job_and_enqueues_nothing(client: TestClient, jobs: Jobs) -> None:
    headers = {"Idempotency-Key": "invoice-7"}
    first = client.post("/jobs/add?delay=60000", json={"a": 1, "b": 2}, headers=headers)
    again = client.post("/jobs/add?delay=60000", json={"b": 2, "a": 1}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == {"jobId": first.json()["jobId"], "status": "delayed"}
    assert jobs.store.count() == 1
    assert 86_000 < redis_client.ttl(keys.idempotency("add:invoice-7")) <= 86_400


def test_the_same_key_with_another_payload_is_422_naming_the_header(client: TestClient, jobs: Jobs) -> None:
    headers = {"Idempotency-Key": "invoice-8"}
    assert client.post("/jobs/add?delay=60000", json={"a": 1, "b": 2}, headers=headers).status_code == 202
    response = client.post("/jobs/add?delay=60000", json={"a": 1, "b": 3}, headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert jobs.store.count() == 1


def test_keys_belong_to_one_actor(client: TestClient, jobs: Jobs) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    one = client.post("/jobs/add?delay=60000", json={"a": 1, "b": 2}, headers=headers).json()["jobId"]
    other = client.post("/jobs/record_run?delay=60000", json={"key": "k"}, headers=headers).json()["jobId"]
    assert one != other


@pytest.fixture
def silent_broker() -> Iterator[Jobs]:
    """Jobs whose RabbitMQ accepts the TCP connection and never answers: each publish fails after 1.5 s."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        away = RabbitmqBroker(url=f"amqp://guest:guest@127.0.0.1:{listener.getsockname()[1]}/", max_priority=10)
        for name in broker.get_declared_actors():
            away.declare_actor(broker.get_actor(name))
        yield Jobs(away, store, RabbitLink(away, deadline_s=1.5))


def claimed(key: str) -> dict[str, object] | None:
    raw = redis_client.get(keys.idempotency(key))
    return json.loads(raw) if raw else None


def wait_for_claim(key: str) -> dict[str, object]:
    deadline = time.monotonic() + 5
    while (claim := claimed(key)) is None:
        assert time.monotonic() < deadline, "the first request never claimed the key"
        time.sleep(0.01)
    return claim


def test_the_loser_of_a_race_never_gets_the_id_of_a_first_request_whose_publish_failed(
    silent_broker: Jobs, jobs: Jobs, empty_held_queue: str
) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(silent_broker.enqueue, "held", {"key": "race"}, idempotency_key="order-77")
        first_claim = wait_for_claim("held:order-77")
        assert not first.done()  # the race is on: the first has claimed the key and is still publishing
        second = pool.submit(jobs.enqueue, "held", {"key": "race"}, idempotency_key="order-77")
        with pytest.raises(Unavailable) as failed:
            first.result(timeout=10)
        assert failed.value.side == "rabbitmq"
        outcome = second.result(timeout=10)
    # Before: the second answered at once with the first's id, whose job was then never published nor recorded.
    assert outcome.job_id != first_claim["jobId"]
    assert jobs.store.get(outcome.job_id) is not None
    assert jobs.store.get(str(first_claim["jobId"])) is None
    assert int(broker.channel.queue_declare(QUEUE, passive=True).method.message_count) == 1
    assert claimed("held:order-77") == {"jobId": outcome.job_id, "fingerprint": first_claim["fingerprint"]}


def test_a_request_whose_key_is_still_being_enqueued_elsewhere_is_503_after_a_short_wait(
    silent_broker: Jobs, jobs: Jobs, empty_held_queue: str
) -> None:
    jobs.idempotency_wait_s = 0.3  # shorter than the first request's publish (1.5 s)
    app.dependency_overrides[provide_jobs] = lambda: jobs
    try:
        with ThreadPoolExecutor(max_workers=1) as pool, TestClient(app) as client:
            first = pool.submit(silent_broker.enqueue, "held", {"key": "slow"}, idempotency_key="order-78")
            wait_for_claim("held:order-78")
            response = client.post("/jobs/held", json={"key": "slow"}, headers={"Idempotency-Key": "order-78"})
            assert response.status_code == 503, response.text
            assert response.json() == {
                "detail": "a request with this Idempotency-Key is still being enqueued; try again shortly"
            }
            with pytest.raises(Unavailable):
                first.result(timeout=10)
    finally:
        app.dependency_overrides.pop(provide_jobs, None)
    assert claimed("held:order-78") is None  # released: the client's retry will enqueue it
