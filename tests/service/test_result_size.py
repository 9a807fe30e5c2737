"""MAX_RESULT_BYTES: a job whose result is larger fails with a readable reason, and its result is not stored."""

from __future__ import annotations

import pytest

from service.domain.errors import ResultTooLarge
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.store import keys
from service.store.record_fields import to_json
from tests.support import result_actors  # noqa: F401  (the test process enqueues its job)
from tests.support.workers import WorkerProcess


def test_a_result_over_max_result_bytes_fails_the_job_at_once_and_is_not_stored(jobs: Jobs) -> None:
    env = {"MAX_RESULT_BYTES": "1000"}
    with WorkerProcess(processes=1, threads=2, queues=["results"], modules=["tests.support.result_actors"], env=env):
        small = jobs.enqueue("sized_result", {"characters": 998}).job_id  # 1000 bytes of JSON: at the cap
        large = jobs.enqueue("sized_result", {"characters": 5000}).job_id
        under, over = jobs.wait(small, timeout_s=30), jobs.wait(large, timeout_s=30)
    assert under.state is JobState.COMPLETED and under.result == "x" * 998
    assert over.state is JobState.FAILED
    assert over.failedReason == "ResultTooLarge: result is 5002 bytes, over MAX_RESULT_BYTES=1000"
    assert over.attempts == 1  # not retried although the job has retries: it would return as much again
    assert over.result is None
    assert jobs.store.client.hget(keys.job(large), "result") is None  # nothing of it kept


def test_the_size_is_counted_in_bytes_of_json() -> None:
    assert to_json("é" * 10, max_bytes=62) == '"' + "\\u00e9" * 10 + '"'  # escaped: 62 bytes
    with pytest.raises(ResultTooLarge, match="result is 22 bytes, over MAX_RESULT_BYTES=21"):
        to_json({"a": "x" * 13}, max_bytes=21)
