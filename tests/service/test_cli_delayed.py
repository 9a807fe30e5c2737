"""`jobs delayed`, `jobs run-now` and `jobs cancel-delayed` against real RabbitMQ, Redis and a worker."""

from __future__ import annotations

import json
import uuid

import pytest

from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.support.cli import run_cli, run_jobs
from tests.support.workers import WorkerProcess

HOUR_MS = 3_600_000


def delay(jobs: Jobs, key: str, ms: int = HOUR_MS) -> str:
    return jobs.enqueue("record_run", {"key": key}, delay_ms=ms).job_id


def test_delayed_lists_each_job_with_its_due_time_and_run_now_runs_the_one_asked_for(
    capsys: pytest.CaptureFixture[str], jobs: Jobs, worker: WorkerProcess
) -> None:
    key = f"cli-{uuid.uuid4()}"
    first, second = delay(jobs, key), delay(jobs, key, 2 * HOUR_MS)
    listed = run_cli(capsys, "delayed", "test", "--json")
    assert listed.code == 0, listed.err
    body = json.loads(listed.out)
    assert (body["queue"], body["total"]) == ("test", 2)
    assert [j["jobId"] for j in body["jobs"]] == [first, second]
    table = run_cli(capsys, "delayed", "test")
    assert table.code == 0 and first in table.out and "DUE (UTC)" in table.out
    assert body["jobs"][0]["dueAt"][5:19].replace("T", " ") in table.out, table.out  # "MM-DD HH:MM:SS"

    ran = run_cli(capsys, "run-now", "test", "--job", first)
    assert (ran.code, ran.out.strip()) == (0, "1 delayed jobs of test sent to run now")
    assert jobs.wait(first, timeout_s=10).state is JobState.COMPLETED
    assert jobs.get(second).state is JobState.DELAYED


def test_cancel_delayed_needs_yes_then_cancels_one_or_all(capsys: pytest.CaptureFixture[str], jobs: Jobs) -> None:
    ids = [delay(jobs, f"cli-cancel-{i}") for i in range(3)]
    unconfirmed = run_cli(capsys, "cancel-delayed", "test")
    assert unconfirmed.code != 0 and "add --yes" in unconfirmed.err
    assert {jobs.get(i).state for i in ids} == {JobState.DELAYED}

    one = run_cli(capsys, "cancel-delayed", "test", "--job", ids[0], "--yes", "--json")
    assert json.loads(one.out) == {"queue": "test", "count": 1, "skipped": 0}
    rest = run_cli(capsys, "cancel-delayed", "test", "--yes")
    assert rest.out.strip() == "cancelled 2 delayed jobs of test"
    assert {jobs.get(i).state for i in ids} == {JobState.CANCELLED}
    assert run_cli(capsys, "delayed", "test").out.strip() == "no delayed jobs in test"


def test_an_unknown_queue_is_one_line_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = [run_jobs("delayed", "nope")]  # the installed executable once; the rest in-process
    outcomes += [run_cli(capsys, "run-now", "nope"), run_cli(capsys, "cancel-delayed", "nope", "--yes")]
    for outcome in outcomes:
        assert outcome.code == 2, outcome
        lines = outcome.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "nope" in lines[0], outcome.err
