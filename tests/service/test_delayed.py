"""A queue's delayed jobs with a real worker: listed with when each is due, run now exactly once, or cancelled."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import pytest

from service.bootstrap import redis_client
from service.domain.clock import now_ms
from service.domain.errors import UnknownQueue
from service.domain.states import JobState
from service.ops.delayed import DelayedJobs, Handled
from service.ops.jobs import Jobs
from tests.support import test_actors
from tests.support.workers import WorkerProcess

HOUR_MS = 3_600_000


def due_ms(stamp: str | None) -> int:
    assert stamp is not None
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def runs(key: str) -> int:
    return int(redis_client.get(f"test:runs:{key}") or 0)


def wait_for(what: str, check: object, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_job_delayed_by_an_hour_is_listed_with_its_due_time_and_run_now_completes_it_within_seconds(
    jobs: Jobs, worker: WorkerProcess
) -> None:
    delayed = DelayedJobs(jobs)
    key = f"hour-{uuid.uuid4()}"
    before = now_ms()
    through_api = jobs.enqueue("record_run", {"key": key}, delay_ms=HOUR_MS).job_id
    # Sent with plain Dramatiq, as another service would: the sender's "delayed" write records when it is due.
    through_dramatiq = test_actors.record_run.send_with_options(kwargs={"key": key + "-2"}, delay=2 * HOUR_MS)
    after = now_ms()

    page = delayed.list("test")
    assert page.total == 2
    assert [j.job_id for j in page.jobs] == [through_api, through_dramatiq.message_id]  # soonest due first
    first, second = page.jobs
    assert before + HOUR_MS <= due_ms(first.due_at) <= after + HOUR_MS
    assert before + 2 * HOUR_MS <= due_ms(second.due_at) <= after + 2 * HOUR_MS
    assert (first.actor, first.retries, first.attempts, first.last_error) == ("record_run", 0, 0, None)

    started = time.monotonic()
    assert delayed.run_now("test", [through_api]) == Handled("test", 1, 0)
    record = jobs.wait(through_api, timeout_s=10)
    assert (record.state, record.result) == (JobState.COMPLETED, 1)
    assert time.monotonic() - started < 5
    assert [j.job_id for j in delayed.list("test").jobs] == [through_dramatiq.message_id]
    assert jobs.get(through_dramatiq.message_id).state is JobState.DELAYED


def test_run_now_runs_the_job_once_and_its_delayed_copy_is_skipped_when_it_comes_due(
    jobs: Jobs, worker: WorkerProcess
) -> None:
    delayed = DelayedJobs(jobs)
    key = f"once-{uuid.uuid4()}"
    job_id = test_actors.record_run.send_with_options(kwargs={"key": key}, delay=2_000).message_id
    assert [j.job_id for j in delayed.list("test").jobs] == [job_id]

    assert delayed.run_now("test") == Handled("test", 1, 0)
    assert jobs.wait(job_id, timeout_s=10).state is JobState.COMPLETED
    # The delayed copy comes due 2 s after sending: the worker publishes it to the queue, takes it, and skips it.
    wait_for("the delayed copy to be skipped", lambda: f"skipping {job_id}: job is completed" in worker.output())
    assert runs(key) == 1
    record = jobs.get(job_id)
    assert (record.state, record.attempts, record.result) == (JobState.COMPLETED, 1, 1)


def test_a_retry_waiting_for_its_time_is_listed_with_its_error_and_run_now_runs_it_with_its_options(
    jobs: Jobs, worker: WorkerProcess
) -> None:
    delayed = DelayedJobs(jobs)
    key = f"retry-{uuid.uuid4()}"
    # retry_delays on the message itself: the run-now copy must carry the message's options, not just the payload.
    job_id = test_actors.flaky.send_with_options(
        kwargs={"key": key, "failures": 2}, retry_delays=[HOUR_MS], max_retries=5
    ).message_id
    wait_for("the first retry to wait", lambda: [j.job_id for j in delayed.list("test").jobs] == [job_id])
    waiting = delayed.list("test").jobs[0]
    assert (waiting.retries, waiting.attempts, waiting.last_error) == (1, 1, "RuntimeError: planned failure 1")
    assert due_ms(waiting.due_at) > now_ms() + HOUR_MS * 0.85  # retry delays have ±10% jitter

    assert delayed.run_now("test", [job_id]) == Handled("test", 1, 0)
    # The copy fails again and waits an hour again (its own retry_delays), as retry 2.
    wait_for("the second retry to wait", lambda: [j.retries for j in delayed.list("test").jobs] == [2])
    # Its own delay again (with jitter), not the actor's 200 ms: the copy carried the message's options.
    assert due_ms(delayed.list("test").jobs[0].due_at) > now_ms() + HOUR_MS * 0.85
    assert delayed.run_now("test") == Handled("test", 1, 0)
    record = jobs.wait(job_id, timeout_s=10)
    assert (record.state, record.result, record.attempts) == (JobState.COMPLETED, 3, 3)


def test_cancel_one_then_all_delayed_jobs_of_a_queue_and_they_never_run(jobs: Jobs, worker: WorkerProcess) -> None:
    delayed = DelayedJobs(jobs)
    key = f"cancel-{uuid.uuid4()}"
    ids = [jobs.enqueue("record_run", {"key": key}, delay_ms=HOUR_MS + i).job_id for i in range(3)]
    short = test_actors.record_run.send_with_options(kwargs={"key": key}, delay=1_500).message_id

    assert delayed.cancel("test", [ids[0], "no-such-job"]) == Handled("test", 1, 1)
    assert jobs.get(ids[0]).state is JobState.CANCELLED
    assert {j.job_id for j in delayed.list("test").jobs} == {*ids[1:], short}

    assert delayed.cancel("test") == Handled("test", 3, 0)
    assert all(jobs.get(i).state is JobState.CANCELLED for i in [*ids, short])
    assert delayed.list("test").total == 0
    wait_for("the cancelled copy to be skipped", lambda: f"skipping {short}: job is cancelled" in worker.output())
    assert runs(key) == 0


def test_run_now_and_cancel_leave_alone_jobs_that_are_not_delayed_in_that_queue(
    jobs: Jobs, worker: WorkerProcess
) -> None:
    delayed = DelayedJobs(jobs)
    done = jobs.enqueue("add", {"a": 1, "b": 2}).job_id
    assert jobs.wait(done, timeout_s=10).state is JobState.COMPLETED
    assert delayed.run_now("test", [done, "no-such-job"]) == Handled("test", 0, 2)
    assert delayed.cancel("test", [done]) == Handled("test", 0, 1)
    assert jobs.get(done).attempts == 1
    for call in (delayed.list, delayed.run_now, delayed.cancel):
        with pytest.raises(UnknownQueue):
            call("no-such-queue")


def test_run_now_skips_a_job_whose_payload_or_options_were_too_large_to_keep_and_it_stays_delayed(
    jobs: Jobs, worker: WorkerProcess
) -> None:
    delayed = DelayedJobs(jobs)
    limit = jobs.max_payload_bytes
    big_options = test_actors.record_run.send_with_options(kwargs={"key": "opts"}, delay=HOUR_MS, note="x" * limit)
    big_payload = test_actors.record_run.send_with_options(kwargs={"key": "y" * limit}, delay=HOUR_MS)
    assert delayed.list("test").total == 2
    assert delayed.run_now("test") == Handled("test", 0, 2)
    assert {jobs.get(m.message_id).state for m in (big_options, big_payload)} == {JobState.DELAYED}


def test_a_delayed_copy_that_comes_due_while_the_job_runs_waits_for_it_and_is_then_skipped(jobs: Jobs) -> None:
    delayed = DelayedJobs(jobs)
    key = f"overlap-{uuid.uuid4()}"
    queue = test_actors.SOLO_QUEUE
    # A short lease, so the copy that finds the job running looks again within seconds, not 30 s.
    with WorkerProcess(processes=1, threads=2, queues=[queue], env={"JOB_LEASE_MS": "2000"}) as solo:
        payload = {"key": key, "seconds": 3, "steps": 6}
        job_id = test_actors.slow_solo.send_with_options(kwargs=payload, delay=1_000).message_id
        assert delayed.run_now(queue) == Handled(queue, 1, 0)
        # The situation: the delayed copy comes due 1 s in, while the run-now copy runs for 3 s.
        wait_for("a copy to find the job running", lambda: f"{job_id} is running in another worker" in solo.output())
        assert jobs.wait(job_id, timeout_s=15).state is JobState.COMPLETED
        wait_for("the waiting copy to be skipped", lambda: f"skipping {job_id}: job is completed" in solo.output())
    assert (redis_client.get(f"test:starts:{key}"), redis_client.get(f"test:completions:{key}")) == ("1", "1")
    assert jobs.get(job_id).attempts == 1
