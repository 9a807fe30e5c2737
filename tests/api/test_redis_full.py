"""Redis full (maxmemory reached, noeviction) or read-only (a replica after a failover): the routes that write answer
503 naming Redis, never 500, and nothing is published; a 202 always finds its record."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from service.bootstrap import broker
from service.domain.states import JobState
from service.ops.inbound_hooks import HOOK_ID_TTL_S, InboundHooks
from service.ops.jobs import Jobs
from service.ops.unavailable import Reason, Unavailable
from service.store import keys
from service.store.connection import connect_redis
from service.store.hook_ids import HookIds
from service.store.job_store import JobStore
from service.store.record_fields import record_fields
from tests.support import api_actors
from tests.support.api_actors import QUEUE
from tests.support.own_redis import OwnRedis
from tests.support.services import services_on, serving

FULL = "redis is out of memory (maxmemory reached) and refuses writes; try again shortly"


@dataclass(frozen=True)
class FullRedis:
    server: OwnRedis
    store: JobStore
    queued_id: str  #: a job recorded while there was room: it can be cancelled
    failed_id: str  #: a failed job recorded while there was room: it can be retried


def record(store: JobStore, state: JobState) -> str:
    message = api_actors.held.message_with_options(kwargs={"key": "before-full"})
    store.transition(message.message_id, JobState.QUEUED, create=record_fields(message, 262_144))
    if state is not JobState.QUEUED:
        assert store.transition(message.message_id, state, fields={"failedReason": "boom"}).applied
    return message.message_id


@pytest.fixture(scope="module")
def full_redis() -> Iterator[FullRedis]:
    with OwnRedis("--maxmemory-policy", "noeviction") as server:
        store = JobStore(connect_redis(server.url))
        queued_id, failed_id = record(store, JobState.QUEUED), record(store, JobState.FAILED)
        server.fill()
        yield FullRedis(server, store, queued_id, failed_id)


@pytest.fixture
def client_on_full(full_redis: FullRedis, empty_held_queue: str) -> Iterator[TestClient]:
    yield from serve(full_redis)


def serve(redis_server: FullRedis) -> Iterator[TestClient]:
    """The API with its service layer (job store, pause flags, queues) on this Redis."""
    with serving(services_on(broker, redis_server.store)) as client:
        yield client


def held_messages() -> int:
    return int(broker.channel.queue_declare(QUEUE, passive=True).method.message_count)


def test_with_redis_full_enqueue_and_pause_are_503_naming_redis_and_nothing_is_published(
    client_on_full: TestClient, full_redis: FullRedis
) -> None:
    # Before: the Idempotency-Key claim and the pause flag raised OutOfMemoryError, a 500.
    requests: list[tuple[str, str, object, dict[str, str]]] = [
        ("POST", "/jobs/held", {"key": "a"}, {}),
        ("POST", "/jobs/held", {"key": "b"}, {"Idempotency-Key": "while-full"}),
        ("POST", "/jobs/held?delay=1000", {"key": "c"}, {}),
        ("POST", "/jobs/held/batch", [{"key": "d"}, {"key": "e"}], {}),
        ("POST", f"/queues/{QUEUE}/pause", None, {}),
    ]
    for method, path, body, headers in requests:
        response = client_on_full.request(method, path, json=body, headers=headers)
        assert response.status_code == 503, (method, path, response.text)
        assert response.json() == {"detail": FULL}, (method, path)
        assert response.headers["Retry-After"] == "5"
    assert held_messages() == 0
    assert full_redis.store.count() == 2  # the two written before Redis filled up
    assert full_redis.store.client.get(keys.idempotency("held:while-full")) is None


def test_with_redis_full_cancel_and_retry_are_never_500(client_on_full: TestClient, full_redis: FullRedis) -> None:
    # Redis lets a script go on writing once its first write was one that frees memory (cancel.lua and reopen.lua
    # start by moving index entries), so these may still succeed; what they must never be is a 500.
    cancel = client_on_full.delete(f"/jobs/{full_redis.queued_id}")
    retry = client_on_full.post(f"/jobs/{full_redis.failed_id}/retry")
    for response, done in ((cancel, "cancelled"), (retry, "queued")):
        assert response.status_code in (202, 503), response.text
        if response.status_code == 503:
            assert response.json() == {"detail": FULL}
        else:
            assert full_redis.store.state_of(response.json()["jobId"]) == done
    broker.flush(QUEUE)


def test_an_enqueue_whose_record_redis_refuses_is_503_and_publishes_nothing(
    client_on_full: TestClient, full_redis: FullRedis
) -> None:
    # Before: published first, then the record write failed inside Dramatiq's after_enqueue, which swallowed it:
    # 202, and GET said 404 for a job that was queued in RabbitMQ.
    key = f"k-{uuid.uuid4().hex[:6]}"
    response = client_on_full.post("/jobs/held", json={"key": key})
    assert response.status_code == 503, response.text
    assert held_messages() == 0
    assert full_redis.store.count() == 2  # the two written before Redis filled up


READ_ONLY = "redis is a read-only replica (a failover under way?); try again shortly"


@pytest.fixture(scope="module")
def replica() -> Iterator[FullRedis]:
    """Where a client lands when Redis fails over and its address still points at the old master, now a replica."""
    with OwnRedis("--repl-diskless-sync-delay", "0") as primary:
        queued_id, failed_id = (
            record(JobStore(primary.client()), state) for state in (JobState.QUEUED, JobState.FAILED)
        )
        with OwnRedis("--replicaof", "127.0.0.1", str(primary.port)) as server:
            store = JobStore(connect_redis(server.url))
            deadline = time.monotonic() + 10
            while store.state_of(failed_id) != "failed":  # the replica has synced
                assert time.monotonic() < deadline, "the replica did not sync within 10 s"
                time.sleep(0.05)
            yield FullRedis(server, store, queued_id, failed_id)


@pytest.fixture
def client_on_replica(replica: FullRedis, empty_held_queue: str) -> Iterator[TestClient]:
    yield from serve(replica)


def test_with_redis_read_only_every_route_that_writes_is_503_naming_redis(
    client_on_replica: TestClient, replica: FullRedis
) -> None:
    requests: list[tuple[str, str, object, dict[str, str]]] = [
        ("POST", "/jobs/held", {"key": "a"}, {}),
        ("POST", "/jobs/held", {"key": "b"}, {"Idempotency-Key": "while-read-only"}),
        ("POST", "/jobs/held/batch", [{"key": "d"}], {}),
        ("DELETE", f"/jobs/{replica.queued_id}", None, {}),
        ("POST", f"/jobs/{replica.failed_id}/retry", None, {}),
        ("POST", f"/queues/{QUEUE}/pause", None, {}),
        ("POST", f"/queues/{QUEUE}/resume", None, {}),
    ]
    for method, path, body, headers in requests:
        response = client_on_replica.request(method, path, json=body, headers=headers)
        assert response.status_code == 503, (method, path, response.text)
        assert response.json() == {"detail": READ_ONLY}, (method, path)
    assert held_messages() == 0
    assert client_on_replica.get(f"/jobs/{replica.queued_id}").json()["state"] == "queued"
    assert client_on_replica.get(f"/jobs/{replica.failed_id}").json()["state"] == "failed"


def test_with_redis_read_only_an_inbound_hook_is_refused_saying_why(replica: FullRedis) -> None:
    # Before: the claim of the hook's webhook-id made every Redis error "redis unreachable".
    hooks = InboundHooks(Jobs(broker, replica.store), HookIds(replica.store.client, HOOK_ID_TTL_S))
    with pytest.raises(Unavailable) as refused:
        hooks.enqueue("add", "msg_read_only", {"a": 1, "b": 2})
    assert refused.value.reason is Reason.READ_ONLY
    assert replica.store.client.get(keys.hook_id("msg_read_only")) is None
