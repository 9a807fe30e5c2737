"""A failed attempt whose retry cannot be published is not acknowledged: the job is not lost, it runs again."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from service.bootstrap import redis_client
from service.domain.states import JobState
from service.ops.jobs import Jobs, Unavailable
from service.ops.queues import QueueControl
from service.rabbit.dead_letters import DeadLetters
from service.store.pauses import PauseFlags
from tests.reliability.harness import jobs_through, through, wait_for, worker_env
from tests.support.fencing_actors import QUEUE, events, fenced_work
from tests.support.proxy import FaultProxy
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.reliability]


def test_a_retry_that_cannot_be_published_leaves_the_original_unacknowledged_and_the_job_completes(
    jobs: Jobs,
) -> None:
    run = uuid.uuid4().hex[:8]
    with FaultProxy(5672, name="rabbit") as rabbit:
        env = {**worker_env(), "JOB_LEASE_MS": "2000"}
        # One quick connection attempt per try: the publish fails within a second instead of a minute.
        env["RABBITMQ_URL"] = through(os.environ["RABBITMQ_URL"], rabbit, connection_attempts="1", retry_delay="0")
        worker = WorkerProcess(threads=1, queues=[QUEUE], modules=["tests.support.fencing_actors"], env=env)
        try:
            worker.start(timeout=60)
            warm_up = fenced_work.send(run=f"{run}-warm-up", ms=0)  # so the worker's consumers are connected
            assert jobs.wait(warm_up.message_id, timeout_s=20).state is JobState.COMPLETED
            rabbit.refuse_new()  # the consumer stays connected; publishing needs a connection of its own
            message = fenced_work.send(run=run, ms=50, fail_first=True)
            failed = wait_for(lambda: any(what == "failure" for what, _, _ in events(run)), timeout=20)
            assert failed is not None, events(run)
            time.sleep(2.0)  # RabbitMQ takes no new connection for 2 s: the retry's publish fails meanwhile
            rabbit.up()
            record = jobs.wait(message.message_id, timeout_s=20)
            log = worker.output()
        finally:
            worker.kill()
    seen = [what for what, _, _ in events(run)]
    assert record.state is JobState.COMPLETED, (record, log[-3000:])
    assert "its retry could not be published" in log  # the situation was reached
    assert seen == ["start", "failure", "start", "effect"], seen
    assert JobState.DELAYED not in [entry.state for entry in record.history]  # no retry was published, none recorded


def test_a_dead_letter_leaves_its_queue_only_once_its_copy_is_published(jobs: Jobs) -> None:
    run = uuid.uuid4().hex[:8]
    dead_letters = DeadLetters(jobs.link)
    with WorkerProcess(threads=1, queues=[QUEUE], modules=["tests.support.fencing_actors"], env=worker_env()):
        message = fenced_work.send_with_options(kwargs={"run": run, "ms": 0, "fail_first": True}, max_retries=0)
        assert jobs.wait(message.message_id, timeout_s=20).state is JobState.FAILED
        assert wait_for(lambda: dead_letters.count(QUEUE) == 1, timeout=10) is not None

        with FaultProxy(5672, name="rabbit") as rabbit:
            # Reading the dead letters works; publishing their copies does not.
            cut_off = jobs_through(through(os.environ["RABBITMQ_URL"], rabbit), os.environ["REDIS_URL"])
            control = QueueControl(cut_off, PauseFlags(redis_client), dead_letters)
            rabbit.down()
            with pytest.raises(Unavailable):
                control.requeue_dead(QUEUE)
            assert dead_letters.count(QUEUE) == 1
            assert jobs.get(message.message_id).state is JobState.FAILED  # not left `queued` with no message

            rabbit.up()
            assert control.requeue_dead(QUEUE).requeued == 1
        assert dead_letters.count(QUEUE) == 0
        assert jobs.wait(message.message_id, timeout_s=20).state is JobState.COMPLETED
