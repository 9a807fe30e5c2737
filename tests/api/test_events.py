"""GET /jobs/{jobId}/events from a real uvicorn process: state and progress as Server-Sent Events, then the end."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from service.ops.jobs import Jobs
from tests.support import test_actors
from tests.support.records import put_record
from tests.support.web import WebProcess
from tests.support.workers import WorkerProcess


@pytest.fixture(scope="module")
def tight_web() -> Iterator[WebProcess]:
    """One stream at a time, each at most 1.5 s long."""
    with WebProcess(env={"SSE_MAX_STREAMS": "1", "SSE_MAX_SECONDS": "1.5"}) as process:
        yield process


def read_events(response: httpx.Response) -> Iterator[tuple[str, dict[str, object]]]:
    name = "message"
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            yield name, json.loads(line[len("data: ") :])
            name = "message"


def test_progress_streams_until_the_job_completes_and_then_the_stream_ends(
    server: str, worker: WorkerProcess, jobs: Jobs
) -> None:
    job_id = test_actors.slow.send(key="sse", seconds=2, steps=10).message_id
    started = time.monotonic()
    with httpx.stream("GET", f"{server}/jobs/{job_id}/events", timeout=20) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(read_events(response))
    assert time.monotonic() - started < 15
    assert {name for name, _ in events} == {"job"}
    progress = [e["progress"] for _, e in events if e["state"] == "active"]
    assert len(set(progress)) >= 3, events
    assert progress == sorted(progress)
    assert any(str(e["progressMessage"]).startswith("step ") for _, e in events)
    last = events[-1][1]
    assert (last["state"], last["progress"], last["jobId"]) == ("completed", 100, job_id)


def test_a_failed_job_ends_its_stream_with_the_reason(server: str, worker: WorkerProcess, jobs: Jobs) -> None:
    job_id = test_actors.stuck.send(seconds=60).message_id
    with httpx.stream("GET", f"{server}/jobs/{job_id}/events", timeout=20) as response:
        events = list(read_events(response))
    assert events[-1][1]["state"] == "failed"
    assert "TimeLimitExceeded" in str(events[-1][1]["failedReason"])


def test_a_finished_job_gives_one_event_and_the_stream_ends_at_once(server: str, jobs: Jobs) -> None:
    job_id = put_record()
    jobs.cancel(job_id)
    with httpx.stream("GET", f"{server}/jobs/{job_id}/events", timeout=5) as response:
        events = list(read_events(response))
    assert [(name, e["state"]) for name, e in events] == [("job", "cancelled")]


def test_an_unknown_job_is_a_404_not_a_stream(server: str) -> None:
    response = httpx.get(f"{server}/jobs/no-such-job/events", timeout=5)
    assert response.status_code == 404
    assert response.json() == {"detail": "Job not found"}


def test_streams_beyond_the_limit_get_503_and_each_stream_ends_after_its_lifetime(
    tight_web: WebProcess, jobs: Jobs
) -> None:
    job_id = put_record()  # never published: it stays queued
    opened = threading.Event()
    outcome: dict[str, object] = {}

    def hold_a_stream() -> None:
        began = time.monotonic()
        with httpx.stream("GET", f"{tight_web.url}/jobs/{job_id}/events", timeout=10) as response:
            opened.set()
            outcome["events"] = list(read_events(response))
        outcome["seconds"] = time.monotonic() - began

    holder = threading.Thread(target=hold_a_stream)
    holder.start()
    assert opened.wait(5)
    refused = httpx.get(f"{tight_web.url}/jobs/{job_id}/events", timeout=5)
    assert refused.status_code == 503
    assert "too many open event streams" in refused.json()["detail"]
    assert refused.headers["retry-after"] == "5"
    holder.join(10)
    assert 1.4 < float(str(outcome["seconds"])) < 6
    assert [e["state"] for _, e in outcome["events"]] == ["queued"]  # type: ignore[attr-defined]
    # The slot was given back when the stream ended.
    with httpx.stream("GET", f"{tight_web.url}/jobs/{job_id}/events", timeout=10) as again:
        assert again.status_code == 200


def test_a_client_that_goes_away_gives_its_slot_back(tight_web: WebProcess) -> None:
    job_id = put_record()
    with httpx.stream("GET", f"{tight_web.url}/jobs/{job_id}/events", timeout=10) as first:
        assert first.status_code == 200
        next(first.iter_lines())
    deadline = time.monotonic() + 5
    while True:
        response = httpx.get(f"{tight_web.url}/jobs/no-such/events", timeout=5)
        assert response.status_code == 404
        with httpx.stream("GET", f"{tight_web.url}/jobs/{job_id}/events", timeout=10) as second:
            if second.status_code == 200:
                break
        assert time.monotonic() < deadline, "the slot of a closed stream was not given back"
        time.sleep(0.1)
