"""A job's life recorded in Redis, from a sender through RabbitMQ to a real worker process."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.support import test_actors
from tests.support.workers import WorkerProcess


def test_a_job_completes_with_its_result(jobs: Jobs, worker: WorkerProcess) -> None:
    message = test_actors.add.send(a=2, b=3)
    record = jobs.wait(message.message_id, timeout_s=15)
    assert record.state is JobState.COMPLETED
    assert record.result == 5
    assert record.attempts == 1
    assert record.progress == 100
    assert record.data == {"a": 2, "b": 3}
    assert record.startedAt and record.finishedAt and record.createdAt <= record.startedAt <= record.finishedAt


def test_a_bad_payload_raises_before_anything_is_sent(jobs: Jobs) -> None:
    before = jobs.store.count()
    with pytest.raises(ValidationError):
        test_actors.add.send(a="not a number", b=1)
    assert jobs.store.count() == before


def test_an_error_is_retried_with_backoff_and_then_fails_with_its_reason(jobs: Jobs, worker: WorkerProcess) -> None:
    message = test_actors.flaky.send(key="always", failures=99)
    record = jobs.wait(message.message_id, timeout_s=20)
    assert record.state is JobState.FAILED
    assert record.attempts == 4  # the first run and three retries
    assert record.failedReason == "RuntimeError: planned failure 4"
    assert "planned failure" in (record.traceback or "")
    states = [h.state for h in record.history]
    assert states.count(JobState.DELAYED) == 3
    started = [h.at for h in record.history if h.state is JobState.ACTIVE]
    assert len(started) == 4


def test_a_flaky_job_completes_on_a_later_attempt(jobs: Jobs, worker: WorkerProcess) -> None:
    message = test_actors.flaky.send(key="twice", failures=2)
    record = jobs.wait(message.message_id, timeout_s=20)
    assert record.state is JobState.COMPLETED
    assert record.result == 3
    assert record.attempts == 3


def test_progress_is_seen_mid_job_by_another_process(jobs: Jobs, worker: WorkerProcess) -> None:
    message = test_actors.slow.send(key="progress", seconds=3, steps=30)
    seen: set[int] = set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        record = jobs.get(message.message_id) if jobs.store.get(message.message_id) else None
        if record and record.state is JobState.ACTIVE and 0 < record.progress < 100:
            seen.add(record.progress)
            assert record.progressMessage and record.progressMessage.startswith("step ")
        if record and record.state is JobState.COMPLETED:
            break
        time.sleep(0.1)
    assert len(seen) >= 3, seen
    assert jobs.get(message.message_id).progress == 100


def test_a_job_over_its_time_limit_is_stopped_and_failed(jobs: Jobs, worker: WorkerProcess) -> None:
    message = test_actors.stuck.send(seconds=60)
    record = jobs.wait(message.message_id, timeout_s=15)
    assert record.state is JobState.FAILED
    assert "TimeLimitExceeded" in (record.failedReason or "")


def test_a_stuck_job_with_retries_left_is_interrupted_retried_and_then_failed(
    jobs: Jobs, worker: WorkerProcess
) -> None:
    # `stuck` never returns and has a 1 s time limit; this message allows one retry.
    message = test_actors.stuck.send_with_options(kwargs={"seconds": 60}, max_retries=1)
    record = jobs.wait(message.message_id, timeout_s=20)
    assert record.state is JobState.FAILED
    assert record.attempts == 2, record.history
    assert "TimeLimitExceeded" in (record.failedReason or "")
    steps = [(h.state, h.retry, h.attempt) for h in record.history if h.state is not JobState.QUEUED]
    # Interrupted (the retry is recorded "delayed" with the time limit as its error), run again, failed for good.
    assert steps == [
        (JobState.ACTIVE, 0, 1),
        (JobState.DELAYED, 1, None),
        (JobState.ACTIVE, 1, 2),
        (JobState.FAILED, 1, None),
    ], record.history
    interrupted = next(h for h in record.history if h.state is JobState.DELAYED)
    assert "TimeLimitExceeded" in (interrupted.error or "")
    final = record.history[-1]
    assert "TimeLimitExceeded" in (final.error or "")
