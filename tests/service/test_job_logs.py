"""A job's own log lines: kept with the job (last JOB_LOG_LINES, each capped, redacted), pruned with its record,
read through the service layer, the API and `jobs logs`; written off the job's thread, never blocking it."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from service.bootstrap import services
from service.domain.context import JobContext, current_job
from service.domain.states import JobState
from service.ops.jobs import JobNotFound, Jobs
from service.store import keys
from service.store.job_store import JobStore, Retention
from service.store.log_store import JobLogStore
from service.web import app
from service.worker.job_log_capture import JobLogCapture
from tests.support import log_actors
from tests.support.cli import run_cli, run_jobs
from tests.support.workers import WorkerProcess

#: Registered as a secret by the worker's settings (a setting named *token*): it must never be stored.
SECRET = "tok-5f1e-very-secret-9a7c"
LINE_CHARS = 300


@pytest.fixture(scope="module")
def log_worker() -> Iterator[WorkerProcess]:
    env = {"API_TOKEN": SECRET, "JOB_LOG_LINE_CHARS": str(LINE_CHARS)}
    with WorkerProcess(threads=4, queues=[log_actors.QUEUE], modules=["tests.support.log_actors"], env=env) as w:
        yield w


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def run(jobs: Jobs, actor: str, **payload: object) -> str:
    job_id = jobs.enqueue(actor, payload).job_id
    jobs.wait(job_id, timeout_s=30)
    return job_id


def settled(job_id: str) -> list[dict[str, object]]:
    """The job's lines once the last of them arrived (they are written just after the job ends)."""
    return [line.as_json() for line in services().job_logs.follow(job_id, timeout_s=10)]


def test_the_lines_a_job_logs_are_kept_with_it_in_order(jobs: Jobs, log_worker: WorkerProcess) -> None:
    job_id = run(jobs, "chatty", lines=3, text="hello")
    lines = settled(job_id)
    assert [line["message"] for line in lines] == ["hello 1", "hello 2", "hello 3"]
    assert all(line["level"] == "info" and line["attempt"] == 1 and line["logger"] == "tests.chatty" for line in lines)
    assert len({line["id"] for line in lines}) == len(lines)


def test_a_failing_job_keeps_its_traceback_in_the_line_that_logged_it(jobs: Jobs, log_worker: WorkerProcess) -> None:
    job_id = run(jobs, "chatty", lines=1, text="boom", fail=True)
    assert jobs.get(job_id).state is JobState.FAILED
    logged = [line for line in settled(job_id) if str(line["message"]).startswith("could not finish")]
    assert len(logged) == 1 and logged[0]["level"] == "error"
    assert "ValueError: boom went wrong" in str(logged[0]["message"])
    # Over the cap: the message's start and the traceback's end (what failed) are kept.
    long = run(jobs, "chatty", lines=1, text="boom" * 200, fail=True)
    message = str(next(line for line in settled(long) if line["level"] == "error")["message"])
    assert message.startswith("could not finish\n") and message.endswith("boom went wrong")
    assert len(message) <= LINE_CHARS + 40


def test_a_registered_secret_is_redacted_in_a_stored_line(jobs: Jobs, log_worker: WorkerProcess) -> None:
    job_id = run(jobs, "chatty", lines=2, text=f"calling with token={SECRET} and {json.dumps(SECRET)}")
    assert len(settled(job_id)) == 2  # the lines are written just after the job ends
    stored = jobs.store.client.lrange(keys.job_logs(job_id), 0, -1)
    assert len(stored) >= 2
    assert not any(SECRET in line for line in stored), stored
    assert "***" in json.loads(stored[0])["message"]


def test_only_the_last_200_lines_are_kept_and_each_is_capped(jobs: Jobs, log_worker: WorkerProcess) -> None:
    job_id = run(jobs, "chatty", lines=260, text="x" * 1000)
    lines = settled(job_id)
    assert len(lines) == 200 == jobs.store.client.llen(keys.job_logs(job_id))
    assert all(str(line["message"]).endswith(" more characters)") for line in lines)
    assert all(len(str(line["message"])) <= LINE_CHARS + 40 for line in lines)
    first = run(jobs, "chatty", lines=260, text="n")
    assert [line["message"] for line in settled(first)] == [f"n {n}" for n in range(61, 261)]  # the last 200


def test_a_job_that_logs_nothing_keeps_no_lines(jobs: Jobs, log_worker: WorkerProcess) -> None:
    job_id = run(jobs, "quiet")
    loud = run(jobs, "chatty", lines=1)
    assert len(settled(loud)) == 1  # lines of a job that ended after it have arrived
    assert services().job_logs.page(job_id).lines == []
    assert jobs.store.client.exists(keys.job_logs(job_id)) == 0  # nothing written: not even an empty list


def test_lines_are_pruned_with_the_job_record(jobs: Jobs) -> None:
    store = JobStore(jobs.store.client, Retention(completed_count=1))
    book = JobLogStore(jobs.store.client, keep=200, ttl_s=60)
    for n, job_id in enumerate(("old", "new")):
        create = {"jobId": job_id, "actor": "pruned", "queue": "q", "data": "{}", "createdMs": 1, "createdAt": "x"}
        store.transition(job_id, JobState.ACTIVE, create=create)
        book.append({job_id: [json.dumps({"id": "1", "at": "", "level": "info", "logger": "t", "attempt": 1,
                                          "message": "m"})]})  # fmt: skip
        # A millisecond apart: retention keeps the newest by finish time, and a tie would be decided by the ids.
        store.transition(job_id, JobState.COMPLETED, at_ms=int(time.time() * 1000) + n)
    assert jobs.store.client.exists(keys.job("old")) == 0
    assert jobs.store.client.exists(keys.job_logs("old")) == 0
    assert jobs.store.client.llen(keys.job_logs("new")) == 1
    assert 0 < jobs.store.client.ttl(keys.job_logs("new")) <= 60  # a list written after its record went expires


def test_the_api_gives_a_jobs_lines_and_only_those_after_a_given_line(
    jobs: Jobs, log_worker: WorkerProcess, client: TestClient
) -> None:
    job_id = run(jobs, "chatty", lines=4, text="api")
    settled(job_id)
    body = client.get(f"/jobs/{job_id}/logs").json()
    assert body["jobId"] == job_id and body["state"] == "completed"
    messages = [line["message"] for line in body["lines"]]
    assert messages[:4] == ["api 1", "api 2", "api 3", "api 4"]
    second = body["lines"][1]["id"]
    after = client.get(f"/jobs/{job_id}/logs", params={"after": second}).json()["lines"]
    assert [line["message"] for line in after] == messages[2:]
    unknown = client.get(f"/jobs/{job_id}/logs", params={"after": "not-a-line"}).json()["lines"]
    assert len(unknown) == len(messages)  # trimmed away or never seen: everything kept


def test_the_api_answers_404_for_an_unknown_job(client: TestClient) -> None:
    response = client.get("/jobs/no-such-job/logs")
    assert response.status_code == 404
    assert response.json() == {"detail": "Job not found"}


def test_jobs_logs_prints_the_lines(capsys: pytest.CaptureFixture[str], jobs: Jobs, log_worker: WorkerProcess) -> None:
    job_id = run(jobs, "chatty", lines=2, text="cli")
    settled(job_id)
    shown = run_cli(capsys, "logs", job_id)
    assert shown.code == 0, shown.err
    assert "INFO    tests.chatty [attempt 1]: cli 1" in shown.out and "cli 2" in shown.out
    as_json = run_cli(capsys, "logs", job_id, "--json")
    assert [json.loads(row)["message"] for row in as_json.out.splitlines()][:2] == ["cli 1", "cli 2"]
    missing = run_cli(capsys, "logs", "no-such-job")
    assert missing.code == 3 and "not found" in missing.err.lower()


def test_jobs_logs_follow_prints_lines_as_they_come_and_ends_when_the_job_ends(
    jobs: Jobs, log_worker: WorkerProcess
) -> None:
    job_id = jobs.enqueue("chatty", {"lines": 6, "seconds": 3, "text": "followed"}).job_id
    started = time.monotonic()
    followed = run_jobs("logs", job_id, "--follow", timeout=30)
    took = time.monotonic() - started
    assert followed.code == 0, followed.err
    assert [row.rsplit(": ", 1)[1] for row in followed.out.splitlines() if "tests.chatty" in row] == [
        f"followed {n}" for n in range(1, 7)
    ]
    assert jobs.get(job_id).state is JobState.COMPLETED
    assert took < 15, f"--follow took {took:.1f} s for a 3 s job"


# -- the capture itself, in this process ------------------------------------------------------------------------


def capture_for(store: JobLogStore, flush_s: float = 0.05) -> JobLogCapture:
    return JobLogCapture(store, keep=200, line_chars=LINE_CHARS, flush_s=flush_s)


def log_as_job(capture: JobLogCapture, job_id: str, count: int) -> float:
    """Logs `count` lines as job `job_id` through the capture alone; returns the seconds it took."""
    record_logger = logging.getLogger("tests.capture")
    token = current_job.set(JobContext(job_id, "chatty", "q", 1))
    try:
        started = time.perf_counter()
        for n in range(count):
            capture.handle(record_logger.makeRecord("tests.capture", logging.INFO, __file__, 1, "n=%d", (n,), None))
        return time.perf_counter() - started
    finally:
        current_job.reset(token)


def test_a_thread_with_no_job_keeps_nothing(jobs: Jobs) -> None:
    capture = capture_for(JobLogStore(jobs.store.client, keep=200, ttl_s=60))
    record = logging.getLogger("x").makeRecord("x", logging.INFO, __file__, 1, "no job", (), None)
    assert capture.handle(record) is False
    capture.flush()
    assert capture.stats.written == 0 and capture.stats.flushes == 0


def test_lines_are_written_in_one_pipeline_per_flush(jobs: Jobs) -> None:
    capture = capture_for(JobLogStore(jobs.store.client, keep=200, ttl_s=60))
    log_as_job(capture, "one", 30)
    log_as_job(capture, "two", 20)
    capture.flush()
    assert (capture.stats.flushes, capture.stats.written) == (1, 50)
    assert jobs.store.client.llen(keys.job_logs("one")) == 30


def test_with_redis_away_logging_never_waits_and_the_lost_lines_are_counted() -> None:
    away = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=2, socket_timeout=2)
    capture = capture_for(JobLogStore(away, keep=200, ttl_s=60), flush_s=0.01)
    capture.start()
    try:
        took = log_as_job(capture, "stranded", 500)
        assert took < 0.5, f"500 lines took {took:.3f} s with Redis away"
        deadline = time.monotonic() + 10
        while capture.stats.dropped < 500:
            assert time.monotonic() < deadline, capture.stats
            time.sleep(0.05)
        assert capture.stats.written == 0
    finally:
        capture.stop()


def test_the_service_layer_refuses_an_unknown_job() -> None:
    with pytest.raises(JobNotFound):
        services().job_logs.page("no-such-job")
