"""Flow control per key: a singleton actor holds one job per key (queued, delayed or running) and refuses the next
with the holder's id; a debounced actor runs the last send of a key once, the debounce time after it. A job without a
key is held by neither. Real RabbitMQ and Redis, two worker processes."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from datetime import datetime

import dramatiq
import pytest
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import dq_name
from fastapi.testclient import TestClient
from pydantic import BaseModel

from service.bootstrap import broker, redis_client, store
from service.domain import flow_control
from service.domain.flow_control import FlowUnchecked, InvalidFlowOption, SingletonTaken
from service.domain.records import JobRecord
from service.domain.states import JobState
from service.ops.jobs import Jobs, KeyHeld, Unavailable
from service.rabbit.link import RabbitLink
from service.store import keys
from service.store.connection import connect_redis
from service.store.flow_store import FlowStore
from service.store.job_store import JobStore
from service.web import app
from service.worker.middleware.debounce import Debounce
from service.worker.middleware.singleton import Singleton
from service.worker.typed_actor import job
from tests.support.flow_actors import DEBOUNCE_MS, QUEUE, debounced, one_at_a_time, runs_key
from tests.support.workers import WorkerProcess


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def empty_flow_queue() -> Iterator[None]:
    """No worker consumes the queue unless a test starts one; what a test leaves behind is not the next one's."""
    broker.declare_queue(QUEUE, ensure=True)
    broker.flush(QUEUE)
    yield
    broker.flush(QUEUE)


@pytest.fixture(scope="module")
def workers() -> Iterator[WorkerProcess]:
    """Two worker processes on the queue, for the module's tests from the first that asks for them on (the tests that
    need the queue to themselves come before)."""
    with WorkerProcess(processes=2, threads=4, queues=[QUEUE], modules=["tests.support.flow_actors"]) as process:
        yield process


def claim(key: str) -> str:
    """What one_at_a_time's claim of `key` holds ("<job id>|<ms claimed>"), "" when none."""
    return str(redis_client.get(keys.singleton("one_at_a_time", key)) or "")


def runs(actor: str, key: str) -> list[int]:
    return [int(n) for n in redis_client.lrange(runs_key(actor, key), 0, -1)]


def plain_sender() -> RabbitmqBroker:
    """Another service's plain Dramatiq client: none of this package's hooks run as it sends."""
    return RabbitmqBroker(url=os.environ["RABBITMQ_URL"], confirm_delivery=True, max_priority=10, middleware=[])


def plain_message(actor: str, payload: dict[str, object]) -> dramatiq.Message[object]:
    return dramatiq.Message(queue_name=QUEUE, actor_name=actor, args=(), kwargs=payload, options={})


def wait_for(condition: object, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def settled(jobs: Jobs, job_ids: list[str]) -> list[JobRecord]:
    return [jobs.wait(job_id, timeout_s=30) for job_id in job_ids]


def started_ms(job_id: str) -> int:
    return int(str(redis_client.hget(keys.job(job_id), "startedMs")))


def latest_send(key: str) -> str:
    value = redis_client.get(keys.debounce_latest("debounced", key))
    return str(value).partition(":")[2]


@pytest.fixture
def rabbitmq_away() -> Iterator[Jobs]:
    """Jobs whose RabbitMQ refuses every connection: each publish fails (nothing is listening on its port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = RabbitmqBroker(url=f"amqp://guest:guest@127.0.0.1:{port}/", confirm_delivery=True, max_priority=10)
    for name in broker.get_declared_actors():
        away.declare_actor(broker.get_actor(name))
    yield Jobs(away, store, RabbitLink(away, deadline_s=1.5))


# -- with no worker: the jobs wait in the queue ------------------------------------------------------------------------


def test_the_options_are_checked_when_the_actor_is_declared() -> None:
    assert [flow_control.duration_ms(v) for v in (250, "250ms", "5s", "1.5s", "2m", "1h")] == [
        250, 250, 5000, 1500, 120_000, 3_600_000,
    ]  # fmt: skip
    for bad in ("5 days", "-1s", 0, 1.5, True, "soon"):
        with pytest.raises(InvalidFlowOption):
            flow_control.duration_ms(bad)

    class Payload(BaseModel):
        account_id: str

    for options, why in (
        ({"singleton": True, "debounce": "1s"}, "choose one"),
        ({"singleton": "yes"}, "must be True or False"),
        ({"debounce": "soon"}, "give milliseconds"),
    ):
        with pytest.raises(InvalidFlowOption, match=f"^flow_checked: .*{why}"):
            job(Payload, queue=QUEUE, key="account_id", actor_name="flow_checked", **options)(lambda payload: None)
    assert "flow_checked" not in broker.get_declared_actors()


def test_a_singleton_refuses_a_second_job_of_a_key_through_the_api_and_actor_send(
    client: TestClient, jobs: Jobs
) -> None:
    first = client.post("/jobs/one_at_a_time?delay=60000", json={"account_id": "acme", "n": 1})
    assert first.status_code == 202, first.text
    first_id = first.json()["jobId"]
    # As an Idempotency-Key's duplicate: 202, the holder's id and state, nothing enqueued.
    again = client.post("/jobs/one_at_a_time", json={"account_id": "acme", "n": 2})
    assert again.status_code == 202
    assert again.json() == {"jobId": first_id, "status": "delayed"}
    assert again.headers["Location"] == f"/jobs/{first_id}"
    with pytest.raises(SingletonTaken) as taken:
        one_at_a_time.send(account_id="acme", n=3)
    assert taken.value.job_id == first_id and taken.value.key == "acme"
    assert str(taken.value) == f"singleton: job {first_id} of key acme is already queued or running"
    # The key a sender names counts, not the payload's: this one is free.
    other = client.post("/jobs/one_at_a_time?key=globex", json={"account_id": "acme", "n": 4}).json()["jobId"]
    by_send = one_at_a_time.send(account_id="initech", n=5).message_id
    assert len({first_id, other, by_send}) == 3
    # No key, no claim: any number of them.
    unkeyed = [jobs.enqueue("one_at_a_time", {"n": n}, delay_ms=60_000).job_id for n in (6, 7)]
    assert len(set(unkeyed)) == 2
    assert jobs.store.count(actor="one_at_a_time") == 5
    assert jobs.get(first_id).data["n"] == 1
    assert claim("acme").startswith(f"{first_id}|")


def test_a_singleton_batch_names_a_key_once_and_gets_the_holders_id_for_a_held_key(
    client: TestClient, jobs: Jobs
) -> None:
    held = jobs.enqueue("one_at_a_time", {"account_id": "acme"}, delay_ms=60_000).job_id
    twice = client.post(
        "/jobs/one_at_a_time/batch", json=[{"account_id": "a"}, {"account_id": "b"}, {"account_id": "a"}]
    )
    assert twice.status_code == 422
    assert "items 0 and 2 have the key 'a'" in twice.json()["detail"]
    batch = client.post("/jobs/one_at_a_time/batch", json=[{"account_id": "acme"}, {"account_id": "b"}, {}])
    assert batch.status_code == 202, batch.text
    ids = batch.json()["jobIds"]
    assert ids[0] == held and held not in ids[1:]
    assert jobs.store.count(actor="one_at_a_time") == 3  # the held one, and the two new


def test_an_idempotency_key_is_not_kept_for_a_send_a_singleton_refused(client: TestClient, jobs: Jobs) -> None:
    held = jobs.enqueue("one_at_a_time", {"account_id": "acme", "n": 1}, delay_ms=60_000).job_id
    headers = {"Idempotency-Key": "order-9"}
    refused = client.post("/jobs/one_at_a_time", json={"account_id": "acme", "n": 2}, headers=headers)
    assert refused.json() == {"jobId": held, "status": "delayed"}
    assert redis_client.get(keys.idempotency("one_at_a_time:order-9")) is None  # not kept for a job never made
    jobs.cancel(held)
    again = client.post("/jobs/one_at_a_time", json={"account_id": "acme", "n": 2}, headers=headers).json()
    assert again["jobId"] != held and again["status"] == "queued"
    repeated = client.post("/jobs/one_at_a_time", json={"account_id": "acme", "n": 2}, headers=headers).json()
    assert repeated == again  # from here on the key answers as usual


def test_a_claim_whose_job_has_no_record_is_taken_over_once_it_is_older_than_the_grace(jobs: Jobs) -> None:
    first = jobs.enqueue("one_at_a_time", {"account_id": "acme"}, delay_ms=60_000).job_id
    # Its record lost (a Redis that forgot it; a sender that died between the claim and the record): while the claim
    # is younger than the grace, it may be a sender still writing the record, and the key stays held.
    redis_client.delete(keys.job(first))
    assert jobs.enqueue("one_at_a_time", {"account_id": "acme"}, delay_ms=60_000).job_id == first
    # Claimed longer ago than the grace: stale, taken over.
    claimed_ms = int(claim("acme").rpartition("|")[2])
    redis_client.set(
        keys.singleton("one_at_a_time", "acme"), f"{first}|{claimed_ms - flow_control.CLAIM_PENDING_MS - 1}"
    )
    second = jobs.enqueue("one_at_a_time", {"account_id": "acme"}, delay_ms=60_000).job_id
    assert second != first
    assert claim("acme").startswith(f"{second}|")
    assert jobs.get(second).state is JobState.DELAYED


def test_a_retry_takes_the_key_again_and_is_refused_while_another_job_holds_it(client: TestClient, jobs: Jobs) -> None:
    first = jobs.enqueue("one_at_a_time", {"account_id": "acme", "n": 1}, delay_ms=60_000).job_id
    jobs.cancel(first)
    second = jobs.enqueue("one_at_a_time", {"account_id": "acme", "n": 2}, delay_ms=60_000).job_id
    reason = f"singleton: job {second} of key acme is already queued or running"
    with pytest.raises(KeyHeld, match=f"^{reason}$"):
        jobs.retry(first)
    refused = client.post(f"/jobs/{first}/retry")
    assert (refused.status_code, refused.json()) == (409, {"detail": reason})
    assert jobs.get(first).state is JobState.CANCELLED
    jobs.cancel(second)
    assert jobs.retry(first).state is JobState.QUEUED
    assert claim("acme").startswith(f"{first}|")
    assert jobs.enqueue("one_at_a_time", {"account_id": "acme", "n": 3}).job_id == first


def test_when_redis_cannot_be_asked_a_send_is_refused_and_a_start_does_not_happen() -> None:
    """actor.send() raises and sends nothing; the worker's hooks raise, so the job is parked, not run unchecked
    (service/worker/hook_failures.py)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = JobStore(connect_redis(f"redis://127.0.0.1:{port}/0"))
    flow = FlowStore(away)
    singleton = Singleton(flow, away, max_payload_bytes=1000)
    message = one_at_a_time.message_with_options(kwargs={"account_id": "acme"})
    with pytest.raises(FlowUnchecked, match=r"^singleton: the key's claim could not be checked"):
        singleton.before_enqueue(broker, message, None)
    assert flow_control.CLAIM not in message.options
    with pytest.raises(redis.ConnectionError):
        singleton.before_process_message(broker, MessageProxy(message))
    delayed = debounced.message_with_options(kwargs={"account_id": "acme"})
    delayed.options[flow_control.SENT_AT] = flow_control.send_time_us()
    with pytest.raises(redis.ConnectionError):
        Debounce(flow, away, max_payload_bytes=1000).before_process_message(broker, MessageProxy(delayed))


def test_a_debounced_send_waits_in_the_delay_queue_due_the_debounce_time_after_it(jobs: Jobs) -> None:
    before_ms = int(time.time() * 1000)
    sent = jobs.enqueue("debounced", {"account_id": "acme", "n": 1})
    assert sent.state is JobState.DELAYED
    assert int(broker.channel.queue_declare(dq_name(QUEUE), passive=True).method.message_count) == 1
    due = datetime.fromisoformat(str(redis_client.hget(keys.job(sent.job_id), "dueAt"))).timestamp() * 1000
    assert before_ms + DEBOUNCE_MS <= due <= time.time() * 1000 + DEBOUNCE_MS
    assert latest_send("acme") == sent.job_id


# -- with two worker processes (the module's, from here on) ------------------------------------------------------------


@pytest.mark.slow
def test_a_singletons_key_is_free_again_once_its_job_completed_failed_or_cancelled(
    jobs: Jobs, workers: WorkerProcess
) -> None:
    cancelled = jobs.enqueue("one_at_a_time", {"account_id": "acme", "n": 1}, delay_ms=60_000).job_id
    assert jobs.enqueue("one_at_a_time", {"account_id": "acme", "n": 2}).job_id == cancelled
    jobs.cancel(cancelled)
    failed = jobs.enqueue("one_at_a_time", {"account_id": "acme", "n": 3, "fail": True}).job_id
    assert failed != cancelled
    assert jobs.wait(failed, timeout_s=30).state is JobState.FAILED
    completed = jobs.enqueue("one_at_a_time", {"account_id": "acme", "n": 4}).job_id
    assert completed != failed
    assert jobs.wait(completed, timeout_s=30).state is JobState.COMPLETED
    last = one_at_a_time.send(account_id="acme", n=5).message_id
    assert jobs.wait(last, timeout_s=30).state is JobState.COMPLETED
    assert runs("one_at_a_time", "acme") == [3, 4, 5]
    assert claim("acme") == ""  # freed by the last one's end


@pytest.mark.slow
def test_a_plain_dramatiq_senders_duplicate_ends_cancelled_with_the_reason_and_never_runs(
    jobs: Jobs, workers: WorkerProcess
) -> None:
    sender = plain_sender()
    running = jobs.enqueue("one_at_a_time", {"account_id": "acme", "n": 1, "seconds": 3}).job_id
    wait_for(lambda: jobs.get(running).state is JobState.ACTIVE, "the first job to start")
    duplicate = plain_message("one_at_a_time", {"account_id": "acme", "n": 2})
    sender.enqueue(duplicate)
    refused = jobs.wait(duplicate.message_id, timeout_s=30)
    assert jobs.get(running).state is JobState.ACTIVE  # refused while the holder ran
    assert jobs.wait(running, timeout_s=30).state is JobState.COMPLETED
    # Free again: a plain sender's job of the key now takes the claim and runs.
    later = plain_message("one_at_a_time", {"account_id": "acme", "n": 3})
    sender.enqueue(later)
    assert jobs.wait(later.message_id, timeout_s=30).state is JobState.COMPLETED
    sender.close()
    assert refused.state is JobState.CANCELLED
    assert refused.failedReason == f"singleton: job {running} of key acme is already queued or running"
    assert refused.key == "acme" and refused.attempts == 0
    assert runs("one_at_a_time", "acme") == [1, 3]


@pytest.mark.slow
def test_ten_sends_of_a_key_within_the_window_run_once_with_the_last_payload_after_the_debounce_time(
    client: TestClient, jobs: Jobs, workers: WorkerProcess
) -> None:
    sent: list[str] = []
    for n in range(10):  # every 300 ms, well within 1.5 s of the previous one: through the API and actor.send
        before_last_send_ms = int(time.time() * 1000)
        if n % 2:
            sent.append(debounced.send(account_id="acme", n=n).message_id)
        else:
            answer = client.post("/jobs/debounced", json={"account_id": "acme", "n": n})
            assert answer.status_code == 202 and answer.json()["status"] == "delayed"
            sent.append(answer.json()["jobId"])
        time.sleep(0.3)
    records = settled(jobs, sent)
    *superseded, latest = records
    assert latest.state is JobState.COMPLETED and latest.result == 9
    assert runs("debounced", "acme") == [9]
    assert started_ms(latest.jobId) >= before_last_send_ms + DEBOUNCE_MS
    for i, record in enumerate(superseded):
        assert record.state is JobState.CANCELLED and record.attempts == 0
        by = (record.failedReason or "").removeprefix("debounced: superseded by job ")
        assert by in sent[i + 1 :], record.failedReason
    assert len(sent) == len(set(sent)) == 10


@pytest.mark.slow
def test_two_keys_are_debounced_apart_and_a_job_without_a_key_is_not(jobs: Jobs, workers: WorkerProcess) -> None:
    ids = {
        "a": [jobs.enqueue("debounced", {"account_id": "a", "n": n}).job_id for n in (1, 2)],
        "b": [debounced.send(account_id="b", n=n).message_id for n in (3, 4)],
    }
    unkeyed = jobs.enqueue("debounced", {"n": 5})
    assert unkeyed.state is JobState.QUEUED  # not delayed: no key, no debounce
    records = {key: settled(jobs, job_ids) for key, job_ids in ids.items()}
    assert jobs.wait(unkeyed.job_id, timeout_s=30).state is JobState.COMPLETED
    assert [r.state for r in records["a"] + records["b"]] == [JobState.CANCELLED, JobState.COMPLETED] * 2
    assert (runs("debounced", "a"), runs("debounced", "b"), runs("debounced", "")) == ([2], [4], [5])


@pytest.mark.slow
def test_a_plain_dramatiq_senders_messages_are_debounced_by_the_worker(jobs: Jobs, workers: WorkerProcess) -> None:
    sender = plain_sender()
    messages = []
    for n in range(3):
        messages.append(plain_message("debounced", {"account_id": "plain", "n": n}))  # made now: its send time
        sender.enqueue(messages[-1])
        time.sleep(0.1)
    records = settled(jobs, [m.message_id for m in messages])
    sender.close()
    assert [r.state for r in records] == [JobState.CANCELLED, JobState.CANCELLED, JobState.COMPLETED]
    assert runs("debounced", "plain") == [2]
    # Delayed from when the last one was made, as if its sender had delayed it.
    assert started_ms(records[-1].jobId) >= messages[-1].message_timestamp + DEBOUNCE_MS


@pytest.mark.slow
def test_a_send_whose_publish_failed_supersedes_nothing(
    jobs: Jobs, rabbitmq_away: Jobs, workers: WorkerProcess
) -> None:
    first = jobs.enqueue("debounced", {"account_id": "acme", "n": 1}).job_id
    with pytest.raises(Unavailable) as failed:
        rabbitmq_away.enqueue("debounced", {"account_id": "acme", "n": 2})
    assert failed.value.side == "rabbitmq"
    assert jobs.store.count(actor="debounced") == 1  # its record was taken back
    assert latest_send("acme") == first
    assert jobs.wait(first, timeout_s=30).state is JobState.COMPLETED
    assert runs("debounced", "acme") == [1]
