"""A job's key: from the actor's key field or the sender, kept on the record, indexed, listed and pruned with it."""

from __future__ import annotations

import dramatiq
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from service.domain import job_key
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.store import keys
from service.web import app
from service.worker.typed_actor import job
from tests.support import key_actors
from tests.support.workers import WorkerProcess


def test_a_key_comes_from_the_sender_before_the_actors_key_field() -> None:
    assert job_key.key_of({}, {"account_id": "acme"}, "account_id") == "acme"
    assert job_key.key_of({"key": "other"}, {"account_id": "acme"}, "account_id") == "other"
    assert job_key.key_of({}, {"account_id": 42}, "account_id") == "42"
    assert job_key.key_of({}, {"n": 1}, None) is None
    for bad in ("", "a\nb", "x" * 201, 1.5, True, {"a": 1}):
        with pytest.raises(job_key.InvalidKey, match=r"^key: "):
            job_key.checked(bad)


def test_an_actor_cannot_name_a_key_field_its_payload_lacks() -> None:
    class Payload(BaseModel):
        n: int

    with pytest.raises(ValueError, match="has no such field"):
        job(Payload, queue="test-keys", key="account_id")(lambda payload: None)


def test_the_key_is_on_the_record_and_the_index(jobs: Jobs) -> None:
    by_field = jobs.enqueue("per_account", {"account_id": "acme"}, delay_ms=60_000)
    by_sender = jobs.enqueue("per_account", {"account_id": "acme"}, delay_ms=60_000, key="override")
    unkeyed = jobs.enqueue("unkeyed", {"n": 1}, delay_ms=60_000)
    assert jobs.get(by_field.job_id).key == "acme"
    assert jobs.get(by_sender.job_id).key == "override"
    assert jobs.get(unkeyed.job_id).key is None
    assert [j.jobId for j in jobs.list(key="acme").jobs] == [by_field.job_id]
    assert [j.jobId for j in jobs.list(key="override").jobs] == [by_sender.job_id]
    # A record removed because its message was not published leaves no index entry behind.
    assert jobs.store.discard(by_field.job_id)
    assert jobs.store.client.zcard(keys.index_by_key("acme")) == 0


def test_the_api_takes_a_key_shows_it_and_filters_by_it(jobs: Jobs) -> None:
    with TestClient(app) as client:
        sent = client.post("/jobs/unkeyed?delay=60000&key=tenant-7", json={"n": 1})
        assert sent.status_code == 202, sent.text
        job_id = sent.json()["jobId"]
        assert client.get(f"/jobs/{job_id}").json()["key"] == "tenant-7"
        listed = client.get("/jobs?key=tenant-7").json()["jobs"]
        assert [j["jobId"] for j in listed] == [job_id]
        bad = client.post("/jobs/unkeyed?key=", json={"n": 1})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "key"]
        bad_field = client.post("/jobs/per_account", json={"account_id": ""})
        assert bad_field.status_code == 202  # an empty key field is no key
        assert client.get(f"/jobs/{bad_field.json()['jobId']}").json()["key"] is None


@pytest.mark.slow
def test_a_worker_records_the_key_of_a_plain_dramatiq_senders_job(jobs: Jobs) -> None:
    """A sender with plain Dramatiq builds the message itself: the worker takes the key from the key field."""
    message: dramatiq.Message[object] = dramatiq.Message(
        queue_name=key_actors.QUEUE,
        actor_name="per_account",
        args=(),
        kwargs={"account_id": "foreign-co", "n": 3},
        options={},
    )
    with WorkerProcess(threads=2, queues=[key_actors.QUEUE], modules=["tests.support.key_actors"]):
        jobs.broker.enqueue(message)
        record = jobs.wait(message.message_id, timeout_s=30)
    assert record.state is JobState.COMPLETED
    assert record.key == "foreign-co"
    assert [j.jobId for j in jobs.list(key="foreign-co").jobs] == [message.message_id]
