"""GET /metrics: Prometheus text that prometheus-client's own parser reads and `promtool check metrics` accepts,
with queue depth from RabbitMQ, jobs by state, totals and run times, each counted once, by the store. (What a
worker serves on its own port: tests/service/test_worker_metrics.py.)"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from service.bootstrap import broker, redis_client
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.ops.metrics import RUN_BUCKETS
from service.store.pauses import PauseFlags
from service.web import app
from tests.support import isolation, ops_actors, test_actors
from tests.support.promtool import ROOT, promtool
from tests.support.workers import WorkerProcess


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def scrape(client: TestClient) -> tuple[str, dict[str, list[Sample]]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f.samples for f in text_string_to_metric_families(response.text)}
    return response.text, families


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def settle_shared_queues(jobs: Jobs) -> None:
    """Let what earlier tests of this process left on the shared worker's queues (a run-now copy, a late retry) run,
    then start from an empty store: the counters below are exact, and such a job would be counted again."""
    deadline = time.monotonic() + 30
    quiet = 0
    while quiet < 3:
        assert time.monotonic() < deadline, "the shared worker's queues did not settle within 30 s"
        ready = sum(broker.get_queue_message_counts(name)[0] for name in ("default", "test"))
        active = jobs.store.count(state=JobState.ACTIVE)
        quiet = quiet + 1 if ready == 0 and active == 0 else 0
        time.sleep(0.2)
    isolation.flush_except_lock(redis_client)


def test_metrics_parse_pass_promtool_and_count_what_happened(
    client: TestClient, jobs: Jobs, worker: WorkerProcess
) -> None:
    settle_shared_queues(jobs)
    done = [test_actors.add.send(a=i, b=1).message_id for i in range(3)]
    failed = test_actors.flaky.send(key="metrics", failures=99).message_id
    for job_id in [*done, failed]:
        jobs.wait(job_id, timeout_s=20)

    text, families = scrape(client)
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    assert value(families["jobs_dependency_up"], "jobs_dependency_up", dependency="rabbitmq") == 1
    assert value(families["jobs_dependency_up"], "jobs_dependency_up", dependency="redis") == 1
    assert value(families["jobs_enqueued"], "jobs_enqueued_total", queue="test", actor="add") == 3
    assert value(families["jobs_finished"], "jobs_finished_total", queue="test", actor="add", state="completed") == 3
    assert value(families["jobs_finished"], "jobs_finished_total", queue="test", actor="flaky", state="failed") == 1
    assert value(families["jobs_in_state"], "jobs_in_state", queue="test", actor="add", state="completed") == 3
    assert value(families["jobs_in_state"], "jobs_in_state", queue="test", actor="flaky", state="failed") == 1
    # Four attempts of the flaky job, three of add: each attempt's run time is one observation.
    runs = families["jobs_run_duration_seconds"]
    assert value(runs, "jobs_run_duration_seconds_count", queue="test", actor="flaky") == 4
    assert value(runs, "jobs_run_duration_seconds_bucket", queue="test", actor="add", le="+Inf") == 3
    assert value(runs, "jobs_run_duration_seconds_bucket", queue="test", actor="add", le="1.0") == 3
    assert value(runs, "jobs_run_duration_seconds_sum", queue="test", actor="add") < 3
    for family in ("jobs_queue_waiting", "jobs_queue_delayed", "jobs_queue_dead", "jobs_queue_paused"):
        assert {s.labels["queue"] for s in families[family]} >= {"default", "test", "ops"}, family
    # Every change above is an event in the stream; nothing trimmed at this size.
    assert (
        value(families["jobs_events_added"], "jobs_events_added_total")
        == value(families["jobs_events_stream_length"], "jobs_events_stream_length")
        > 0
    )
    assert value(families["jobs_events_trimmed"], "jobs_events_trimmed_total") == 0
    assert value(families["jobs_workers_alive"], "jobs_workers_alive") >= 1


def test_queue_depth_comes_from_rabbitmq_and_pause_shows(client: TestClient, jobs: Jobs) -> None:
    assert ops_actors.ops_step.queue_name == "ops"
    broker.flush("ops")
    ids = [jobs.enqueue("ops_step", {"key": "depth", "seconds": 0}).job_id for _ in range(3)]
    later = jobs.enqueue("ops_step", {"key": "depth", "seconds": 0}, delay_ms=60_000).job_id
    PauseFlags(redis_client).pause("ops")
    try:
        _, families = scrape(client)
        assert value(families["jobs_queue_waiting"], "jobs_queue_waiting", queue="ops") == 3
        assert value(families["jobs_queue_delayed"], "jobs_queue_delayed", queue="ops") == 1
        assert value(families["jobs_queue_paused"], "jobs_queue_paused", queue="ops") == 1
        assert value(families["jobs_queue_paused"], "jobs_queue_paused", queue="test") == 0
        assert value(families["jobs_in_state"], "jobs_in_state", queue="ops", actor="ops_step", state="queued") == 3
    finally:
        PauseFlags(redis_client).resume("ops")
        for job_id in [*ids, later]:
            jobs.cancel(job_id)
        broker.flush("ops")


def test_the_run_time_buckets_match_the_lua_script() -> None:
    lua = (ROOT / "service" / "store" / "lua" / "common.lua").read_text()
    match = re.search(r"RUN_BUCKETS = \{([^}]*)\}", lua)
    assert match is not None
    assert tuple(float(b) for b in match.group(1).split(",")) == tuple(float(b) for b in RUN_BUCKETS)
