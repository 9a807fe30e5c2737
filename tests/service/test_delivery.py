"""Delivery guarantees: redeliveries, foreign senders, a killed worker, and states that never go backwards."""

from __future__ import annotations

import os
import signal
import time

import dramatiq

from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.support import test_actors
from tests.support.workers import WorkerProcess


def raw_message(actor: str, queue: str, kwargs: dict[str, object]) -> dramatiq.Message[object]:
    """What a plain Dramatiq client with no status middleware would publish."""
    return dramatiq.Message(queue_name=queue, actor_name=actor, args=(), kwargs=kwargs, options={})


def publish_raw(jobs: Jobs, message: dramatiq.Message[object]) -> None:
    # Straight onto the queue, bypassing every middleware: no record is written by the sender.
    jobs.broker.declare_queue(message.queue_name)
    jobs.broker.channel.basic_publish(exchange="", routing_key=message.queue_name, body=message.encode())


def test_a_job_from_a_plain_dramatiq_client_is_recorded_when_a_worker_sees_it(
    jobs: Jobs, worker: WorkerProcess
) -> None:
    message = raw_message("add", "test", {"a": 20, "b": 22})
    publish_raw(jobs, message)
    record = jobs.wait(message.message_id, timeout_s=15)
    assert record.state is JobState.COMPLETED
    assert record.result == 42
    assert record.data == {"a": 20, "b": 22}


def test_an_invalid_payload_from_a_foreign_sender_fails_at_once_without_retries(
    jobs: Jobs, worker: WorkerProcess
) -> None:
    message = raw_message("flaky", "test", {"key": "x", "failures": "many"})
    publish_raw(jobs, message)
    record = jobs.wait(message.message_id, timeout_s=15)
    assert record.state is JobState.FAILED
    assert record.attempts == 1
    assert record.failedReason is not None
    assert record.failedReason.startswith("InvalidPayload: invalid payload: failures:")
    assert JobState.DELAYED not in [h.state for h in record.history]


def test_a_redelivered_message_of_a_completed_job_is_not_run_again(jobs: Jobs, worker: WorkerProcess) -> None:
    message = test_actors.record_run.send(key="once")
    first = jobs.wait(message.message_id, timeout_s=15)
    assert first.state is JobState.COMPLETED
    # The same message again, as RabbitMQ would redeliver it if the ack had been lost.
    publish_raw(jobs, message)
    # The situation: the worker received the duplicate (and said why it did not run it).
    deadline = time.monotonic() + 15
    while f"skipping {message.message_id}" not in worker.output():
        assert time.monotonic() < deadline, "the duplicate never reached the worker"
        time.sleep(0.05)
    assert jobs.store.client.get("test:runs:once") == "1"
    again = jobs.get(message.message_id)
    assert again.state is JobState.COMPLETED
    assert again.attempts == 1
    assert again.finishedAt == first.finishedAt


def test_a_late_queued_event_does_not_overwrite_active(jobs: Jobs) -> None:
    store = jobs.store
    create = {"jobId": "j1", "actor": "add", "queue": "test", "data": "{}", "createdMs": 1, "createdAt": "x"}
    assert store.transition("j1", JobState.ACTIVE, create=create).applied
    late = store.transition("j1", JobState.QUEUED, create=create)
    assert not late.applied
    assert late.state == "active"
    assert store.transition("j1", JobState.COMPLETED).applied
    assert not store.transition("j1", JobState.ACTIVE).applied  # a redelivery cannot reopen it
    assert not store.transition("j1", JobState.FAILED).applied
    record = store.get("j1")
    assert record is not None and record.state is JobState.COMPLETED


def test_a_retry_attempt_supersedes_the_attempt_before_it(jobs: Jobs) -> None:
    store = jobs.store
    create = {"jobId": "j2", "actor": "add", "queue": "test", "data": "{}", "createdMs": 1, "createdAt": "x"}
    store.transition("j2", JobState.ACTIVE, retries=0, create=create)
    assert store.transition("j2", JobState.DELAYED, retries=1).applied
    # The first attempt's message redelivered after the retry was scheduled: stale, refused.
    assert not store.transition("j2", JobState.ACTIVE, retries=0).applied
    assert store.transition("j2", JobState.ACTIVE, retries=1).applied
    record = store.get("j2")
    assert record is not None and record.attempts == 2


def test_a_worker_killed_mid_job_has_the_job_redelivered_and_completed_once(jobs: Jobs) -> None:
    # A short lease: the redelivered job waits until the dead worker's lease lapses before it runs again.
    lease = {"JOB_LEASE_MS": "3000"}
    with WorkerProcess(processes=1, threads=2, queues=[test_actors.SOLO_QUEUE], env=lease) as victim:
        message = test_actors.slow_solo.send(key="killed", seconds=4, steps=40)
        deadline = time.monotonic() + 15
        while jobs.store.client.get("test:starts:killed") is None:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        assert jobs.get(message.message_id).state is JobState.ACTIVE
        for pid in victim.child_pids():
            os.kill(pid, signal.SIGKILL)
        victim.kill()
    assert jobs.get(message.message_id).state is JobState.ACTIVE  # unacked: RabbitMQ still holds the message
    with WorkerProcess(processes=1, threads=2, queues=[test_actors.SOLO_QUEUE], env=lease):
        record = jobs.wait(message.message_id, timeout_s=30)
    assert record.state is JobState.COMPLETED
    assert record.attempts == 2
    assert jobs.store.client.get("test:starts:killed") == "2"
    assert jobs.store.client.get("test:completions:killed") == "1"
