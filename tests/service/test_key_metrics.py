"""Waiting and running jobs per key on GET /metrics: right after every state change (enqueue, start, completion,
failure, cancel, retry, the requeue of a lost job), gone from Redis once a key has nothing waiting or running, and
capped at the busiest METRICS_TOP_KEYS keys with the rest summed under key="(other)"."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.bootstrap import broker, redis_client, services, store
from service.domain.states import JobState
from service.kits.maintenance import requeue_lost
from service.ops.jobs import Jobs
from service.ops.key_metrics import OTHER, busiest
from service.ops.metrics import JobMetrics
from service.store import keys
from service.store.job_store import KeyLoad
from service.web import app
from tests.support import key_metric_actors
from tests.support.key_metric_actors import QUEUE, gate_cured, gate_open
from tests.support.promtool import promtool
from tests.support.records import move, put_record
from tests.support.workers import WorkerProcess

#: (metric, queue, actor, key) -> value, for the two per-key gauges; (metric,) for the two distinct-key gauges.
Gauges = dict[tuple[str, ...], float]


@pytest.fixture(autouse=True)
def empty_queue() -> None:
    """What an earlier test of this run left on the queue (a cancelled job's message) is not run by the next one."""
    broker.declare_queue(QUEUE, ensure=True)
    for name in (QUEUE, f"{QUEUE}.DQ"):
        broker.channel.queue_purge(name)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def gauges(text: str) -> Gauges:
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    found: Gauges = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("jobs_key_waiting", "jobs_key_running"):
                labels = sample.labels
                found[(sample.name, labels["queue"], labels["actor"], labels["key"])] = sample.value
            elif sample.name in ("jobs_keys_waiting", "jobs_keys_running"):
                found[(sample.name,)] = sample.value
    return found


def scrape(client: TestClient) -> Gauges:
    response = client.get("/metrics")
    assert response.status_code == 200
    return gauges(response.text)


def of_key(found: Gauges, key: str, actor: str = "gated") -> tuple[float, float]:
    """(waiting, running) of one key's jobs of `actor`; (0, 0) when it has no series."""
    return (
        found.get(("jobs_key_waiting", QUEUE, actor, key), 0.0),
        found.get(("jobs_key_running", QUEUE, actor, key), 0.0),
    )


def keys_shown(found: Gauges) -> set[str]:
    return {labels[3] for labels in found if len(labels) == 4}


def assert_nothing_counted(client: TestClient) -> None:
    """Every count back to 0: no per-key series, no key counted, and no field left in either hash."""
    found = scrape(client)
    assert keys_shown(found) == set(), found
    assert found[("jobs_keys_waiting",)] == 0 and found[("jobs_keys_running",)] == 0
    assert redis_client.exists(keys.KEY_WAITING, keys.KEY_RUNNING) == 0


def wait_for(what: str, done: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.05)


def key_worker(*, processes: int = 1, threads: int = 1, env: dict[str, str] | None = None) -> WorkerProcess:
    modules = ["tests.support.key_metric_actors"]
    return WorkerProcess(processes=processes, threads=threads, queues=[QUEUE], modules=modules, env=env)


def gated_job(jobs: Jobs, account: str) -> tuple[str, str]:
    """(job id, gate) of a `gated` job of `account`: it runs until its gate opens."""
    gate = uuid.uuid4().hex
    return jobs.enqueue("gated", {"account_id": account, "gate": gate}).job_id, gate


def finish(gate: str, *, succeed: bool) -> None:
    if succeed:
        redis_client.set(gate_cured(gate), 1)
    redis_client.set(gate_open(gate), 1)


def state_of(job_id: str) -> JobState | None:
    record = store.get(job_id)
    return record.state if record else None


def test_waiting_jobs_count_per_key_from_enqueue_until_cancelled_or_discarded(client: TestClient, jobs: Jobs) -> None:
    assert key_metric_actors.gated.key_field == "account_id"
    later = [jobs.enqueue("gated", {"account_id": "acme", "gate": "g"}, delay_ms=600_000).job_id for _ in range(3)]
    queued = jobs.enqueue("gated", {"account_id": "globex", "gate": "g"}).job_id  # no worker takes the queue here
    sender_keyed = jobs.enqueue("fails_once", {"account_id": "acme", "tag": "t"}, key="initech").job_id
    unkeyed = [put_record(queue=QUEUE), put_record(queue=QUEUE)]
    assert state_of(later[0]) is JobState.DELAYED and state_of(queued) is JobState.QUEUED

    found = scrape(client)
    assert of_key(found, "acme") == (3, 0)  # delayed jobs are waiting too
    assert of_key(found, "globex") == (1, 0)
    assert of_key(found, "initech", actor="fails_once") == (1, 0)  # the sender's key wins over the actor's field
    assert keys_shown(found) == {"acme", "globex", "initech"}  # jobs with no key are in no series
    assert found[("jobs_keys_waiting",)] == 3 and found[("jobs_keys_running",)] == 0

    assert jobs.cancel(later[0]) == "cancelled"
    assert of_key(scrape(client), "acme") == (2, 0)
    for job_id in [*later[1:], queued, *unkeyed]:
        assert jobs.cancel(job_id) == "cancelled"
    assert store.discard(sender_keyed)  # the record of a job whose message could not be published
    assert_nothing_counted(client)


@pytest.mark.slow
def test_running_jobs_count_per_key_until_they_complete_fail_or_are_retried(client: TestClient, jobs: Jobs) -> None:
    # Three threads a process: a process's consumer can prefetch all three jobs (Dramatiq prefetches 2 x threads) when
    # it subscribes before the other one, and must then be able to run them all at once.
    with key_worker(processes=2, threads=3):
        (first, first_gate), (second, second_gate), (other, other_gate) = (
            gated_job(jobs, "acme"),
            gated_job(jobs, "acme"),
            gated_job(jobs, "globex"),
        )
        wait_for("all three running", lambda: all(state_of(j) is JobState.ACTIVE for j in (first, second, other)))
        found = scrape(client)
        assert of_key(found, "acme") == (0, 2)
        assert of_key(found, "globex") == (0, 1)
        assert found[("jobs_keys_waiting",)] == 0 and found[("jobs_keys_running",)] == 2

        finish(first_gate, succeed=True)
        finish(second_gate, succeed=False)
        assert jobs.wait(first, timeout_s=20).state is JobState.COMPLETED
        assert jobs.wait(second, timeout_s=20).state is JobState.FAILED
        assert of_key(scrape(client), "acme") == (0, 0)
        assert of_key(scrape(client), "globex") == (0, 1)
        finish(other_gate, succeed=True)
        assert jobs.wait(other, timeout_s=20).state is JobState.COMPLETED
        assert_nothing_counted(client)

        # Retried by hand: queued, then running again, then done.
        redis_client.delete(gate_open(second_gate))
        jobs.retry(second)
        wait_for("the retried job running", lambda: state_of(second) is JobState.ACTIVE)
        assert of_key(scrape(client), "acme") == (0, 1)
        finish(second_gate, succeed=True)
        assert jobs.wait(second, timeout_s=20).state is JobState.COMPLETED

        # Retried by the worker: delayed between its attempts (waiting), then running, then completed.
        flaky = jobs.enqueue("fails_once", {"account_id": "acme", "tag": uuid.uuid4().hex}).job_id
        assert jobs.wait(flaky, timeout_s=20).state is JobState.COMPLETED
        assert [h.state for h in jobs.get(flaky).history].count(JobState.DELAYED) == 1
        assert_nothing_counted(client)


@pytest.mark.slow
def test_a_lost_jobs_count_moves_from_running_to_waiting_and_back_to_none(client: TestClient, jobs: Jobs) -> None:
    env = {"JOB_LEASE_MS": "1000"}
    dying = key_worker(env=env).start()
    try:
        job_id, gate = gated_job(jobs, "acme")
        wait_for("the job running", lambda: state_of(job_id) is JobState.ACTIVE)
        assert of_key(scrape(client), "acme") == (0, 1)
    finally:
        dying.kill()
    wait_for("its lease lapsed", lambda: redis_client.exists(keys.lease(job_id)) == 0, timeout_s=10)
    assert requeue_lost(store, min_age_ms=0) == [job_id]
    assert state_of(job_id) is JobState.QUEUED
    found = scrape(client)
    assert of_key(found, "acme") == (1, 0)
    assert found[("jobs_keys_waiting",)] == 1 and found[("jobs_keys_running",)] == 0

    finish(gate, succeed=True)
    with key_worker(env=env):
        assert jobs.wait(job_id, timeout_s=20).state is JobState.COMPLETED  # RabbitMQ redelivered it
    assert_nothing_counted(client)


def test_only_the_busiest_keys_get_series_of_their_own_and_the_rest_is_summed() -> None:
    # 30 keys, key k<i> with i + 1 jobs of `gated` (the last one running) and one of `fails_once`.
    waiting = running = 0
    for i in range(30):
        for n in range(i + 1):
            job_id = put_record("gated", queue=QUEUE, key=f"k{i}")
            if n == i:
                move(job_id, JobState.ACTIVE)
                running += 1
            else:
                waiting += 1
        put_record("fails_once", queue=QUEUE, key=f"k{i}")
        waiting += 1
    parts = services().metrics
    metrics = JobMetrics(
        parts.jobs, parts.queues, parts.activity, parts.events, events_maxlen=parts.events_maxlen, top_keys=5
    )
    found = gauges(metrics.render().decode())

    top = {f"k{i}" for i in range(25, 30)}
    assert keys_shown(found) == top | {OTHER}  # 6 label values
    per_key = [labels for labels in found if len(labels) == 4]
    assert len(per_key) == 2 * 6 * 2  # two gauges, six label values, two actors
    assert sum(v for labels, v in found.items() if labels[0] == "jobs_key_waiting") == waiting
    assert sum(v for labels, v in found.items() if labels[0] == "jobs_key_running") == running
    assert of_key(found, "k29") == (29, 1)
    assert of_key(found, OTHER) == (sum(range(25)), 25)
    assert of_key(found, OTHER, actor="fails_once") == (25, 0)
    assert found[("jobs_keys_waiting",)] == 30 and found[("jobs_keys_running",)] == 30


def test_the_top_keys_are_chosen_over_every_actor_ties_by_name_and_no_key_is_dropped() -> None:
    load = KeyLoad(
        waiting={"q|a|b": 2, "q|a|a": 2, "q|b|c": 1, "q|a|x|y": 1, f"q|a|{OTHER}": 7},
        running={"q|b|c": 2, "p|a|x|y": 1},
    )
    figures = busiest(load, 2)
    by_labels = {(r.queue, r.actor, r.key): (r.waiting, r.running) for r in figures.rows}
    # c: 3 over two actors, then a, b and x|y tied at 2 (a by name); a key spelled "(other)" is summed with the rest.
    assert by_labels == {
        ("q", "b", "c"): (1, 2),
        ("q", "a", "a"): (2, 0),
        ("q", "a", OTHER): (2 + 1 + 7, 0),
        ("p", "a", OTHER): (0, 1),
    }
    assert (figures.keys_waiting, figures.keys_running) == (5, 2)
    assert sum(w for w, _ in by_labels.values()) == sum(load.waiting.values())
    assert {r.key for r in busiest(load, 0).rows} == {OTHER}
