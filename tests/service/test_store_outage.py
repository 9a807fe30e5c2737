"""The job store's writes come back after an outage of any length: a failed round trip never uses up the pool."""

from __future__ import annotations

import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.domain.clock import iso_from_ms, now_ms
from service.domain.states import JobState
from service.store.job_store import JobStore
from tests.support.own_redis import OwnRedis

POOL_SIZE = 3


def _fields(job_id: str) -> dict[str, object]:
    created = now_ms()
    return {"jobId": job_id, "actor": "add", "queue": "test", "data": "{}", "priority": "normal",
            "createdMs": created, "createdAt": iso_from_ms(created)}  # fmt: skip


def test_transitions_succeed_once_redis_is_back_after_more_failed_writes_than_the_pool_holds() -> None:
    with OwnRedis() as server:
        client = redis.Redis(
            port=server.port,
            decode_responses=True,
            max_connections=POOL_SIZE,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),  # one refused connect per write keeps the test quick
        )
        store = JobStore(client)
        job_id = str(uuid.uuid4())
        assert store.transition(job_id, JobState.QUEUED, create=_fields(job_id)).applied

        server.kill()
        failures = []
        for _ in range(POOL_SIZE * 4):
            with pytest.raises(redis.ConnectionError) as failure:
                store.transition(job_id, JobState.ACTIVE)
            failures.append(failure.value)
        assert not any(isinstance(f, redis.exceptions.MaxConnectionsError) for f in failures), failures[-1]

        server.start()  # without persistence it comes back empty: the record is written anew
        outcome = store.transition(job_id, JobState.ACTIVE, create=_fields(job_id))
        assert outcome.applied and outcome.state == "active"
        assert store.transition(job_id, JobState.COMPLETED).state == "completed"
        assert len(client.connection_pool._in_use_connections) <= 1
