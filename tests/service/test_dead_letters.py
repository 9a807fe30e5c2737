"""Dead letters: `jobs dead` lists what sits in a queue's dead-letter queue without taking it out, and
`jobs requeue-dead` puts it back for another try, reopening each failed job's record."""

from __future__ import annotations

import json
import time

import pytest

from service.broker import broker, redis_client
from service.jobs import Jobs
from service.states import JobState
from tests.support import ops_actors  # noqa: F401  (declares the ops actors in this process too)
from tests.support.cli import run_cli, run_jobs
from tests.support.workers import WorkerProcess


def dead_in_rabbitmq(queue: str) -> int:
    return int(broker.get_queue_message_counts(queue)[2])


@pytest.mark.slow
def test_dead_lists_without_consuming_and_requeue_dead_runs_them_again(
    capsys: pytest.CaptureFixture[str], jobs: Jobs
) -> None:
    with WorkerProcess(processes=1, threads=2, queues=["ops"], modules=["tests.support.ops_actors"]):
        ids = [jobs.enqueue("ops_doomed", {"key": f"dead-{i}"}).job_id for i in range(3)]
        for job_id in ids:
            assert jobs.wait(job_id, timeout_s=20).state is JobState.FAILED
        # The record says failed just before the worker's nack moves the message to the dead-letter queue.
        deadline = time.monotonic() + 10
        while dead_in_rabbitmq("ops") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dead_in_rabbitmq("ops") == 3

        listed = run_cli(capsys, "dead", "ops", "--json")
        assert listed.code == 0, listed.err
        answer = json.loads(listed.out)
        assert answer["count"] == 3
        assert sorted(m["jobId"] for m in answer["messages"]) == sorted(ids)
        assert all(m["reason"].startswith("PermanentError: not cured yet") for m in answer["messages"])
        assert all(m["state"] == "failed" and m["actor"] == "ops_doomed" for m in answer["messages"])
        table = run_cli(capsys, "dead", "ops")
        assert all(job_id in table.out for job_id in ids)
        assert all(len(line) <= 80 for line in table.out.splitlines()), table.out
        assert dead_in_rabbitmq("ops") == 3  # listing took nothing out

        # One of them was retried by hand meanwhile: its dead copy is stale and must not run a second time.
        redis_client.set("test:cured:dead-0", "1")
        jobs.retry(ids[0])
        assert jobs.wait(ids[0], timeout_s=20).state is JobState.COMPLETED

        for i in (1, 2):
            redis_client.set(f"test:cured:dead-{i}", "1")  # the bug is fixed; now run them again
        requeued = run_cli(capsys, "requeue-dead", "ops", "--json")
        assert requeued.code == 0, requeued.err
        assert json.loads(requeued.out) == {"queue": "ops", "requeued": 2, "stale": 1, "kept": 0}
        for job_id in ids[1:]:
            record = jobs.wait(job_id, timeout_s=20)
            assert record.state is JobState.COMPLETED
            assert any(h.note == "retried from failed" for h in record.history)
        assert dead_in_rabbitmq("ops") == 0
        assert all(int(redis_client.get(f"test:completions:dead-{i}") or 0) == 1 for i in range(3))

    empty = run_cli(capsys, "dead", "ops")
    assert empty.code == 0 and empty.out.strip() == "no dead messages in ops"


def test_dead_letter_commands_refuse_an_unknown_queue() -> None:
    for command in ("dead", "requeue-dead"):
        done = run_jobs(command, "nowhere")
        assert done.code == 2
        assert done.err.strip() == "error: unknown queue 'nowhere'"
