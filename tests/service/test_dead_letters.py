"""Dead letters: `jobs dead` lists what sits in a queue's dead-letter queue without taking it out, and
`jobs requeue-dead` puts it back for another try, reopening each failed job's record."""

from __future__ import annotations

import json
import time

import pytest

from service.bootstrap import broker, redis_client
from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.support import ops_actors  # noqa: F401  (declares the ops actors in this process too)
from tests.support.cli import run_cli, run_jobs
from tests.support.graveyard import bury, dead_ids, empty, read_queue
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
    for command in (["dead"], ["requeue-dead"], ["requeue-dead", "--job", "x"], ["delete-dead", "--yes"]):
        done = run_jobs(*command, "nowhere")
        assert done.code == 2
        assert done.err.strip() == "error: unknown queue 'nowhere'"


def test_dead_pages_with_offset_and_requeue_dead_and_delete_dead_take_one_job_or_all(
    capsys: pytest.CaptureFixture[str], jobs: Jobs
) -> None:
    empty("ops")
    ids = bury("ops_doomed", [{"key": f"cli-{i}"} for i in range(5)])
    first = json.loads(run_cli(capsys, "dead", "ops", "--limit", "2", "--json").out)
    assert (first["count"], first["offset"], first["next"]) == (5, 0, 2)
    assert [m["jobId"] for m in first["messages"]] == ids[:2]
    assert first["messages"][0]["preview"] == '{"key": "cli-0"}'
    rest = json.loads(run_cli(capsys, "dead", "ops", "--offset", "2", "--json").out)
    assert ([m["jobId"] for m in rest["messages"]], rest["next"]) == (ids[2:], None)
    table = run_cli(capsys, "dead", "ops", "--limit", "2")
    assert "more: jobs dead ops --offset 2" in table.out

    one = run_cli(capsys, "requeue-dead", "ops", "--job", ids[0], "--job", "no-such-job", "--json")
    assert one.code == 0, one.err
    assert json.loads(one.out) == {"queue": "ops", "requeued": 1, "stale": 0, "kept": 0, "missing": ["no-such-job"]}
    assert [letter.job_id for letter in read_queue("ops")] == [ids[0]]
    assert jobs.get(ids[0]).state is JobState.QUEUED

    unconfirmed = run_cli(capsys, "delete-dead", "ops", "--job", ids[1])
    assert unconfirmed.code == 2
    assert (
        unconfirmed.err.strip()
        == f"error: delete-dead removes the dead letters of {ids[1]} for good; add --yes to confirm"
    )
    deleted = run_cli(capsys, "delete-dead", "ops", "--job", ids[1], "--yes")
    assert (deleted.code, deleted.out.strip()) == (0, "deleted 1 dead messages of ops")
    assert dead_ids("ops") == ids[2:]
    everything = run_cli(capsys, "delete-dead", "ops", "--yes", "--json")
    assert json.loads(everything.out) == {"queue": "ops", "deleted": 3, "missing": []}
    assert dead_ids("ops") == []
    assert jobs.get(ids[4]).state is JobState.FAILED
    empty("ops")
