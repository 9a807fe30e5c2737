"""GET /queues figures from RabbitMQ and the store, POST /queues/{name}/purge, and priority order in a queue."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.bootstrap import redis_client
from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.support.api_actors import held_worker
from tests.support.workers import WorkerProcess


def figures(client: TestClient, name: str) -> dict[str, object]:
    response = client.get("/queues")
    assert response.status_code == 200
    by_name = {queue["name"]: queue for queue in response.json()}
    assert set(by_name[name]) == {"name", "waiting", "active", "completed", "failed", "delayed", "paused", "dead"}
    return by_name[name]


def test_queue_figures_count_waiting_and_delayed_messages_and_finished_jobs(
    client: TestClient, jobs: Jobs, empty_held_queue: str, quiet_worker: WorkerProcess
) -> None:
    for _ in range(3):
        client.post("/jobs/held", json={"key": "figures"})
    client.post("/jobs/held?delay=60000", json={"key": "figures"})
    held = figures(client, empty_held_queue)
    assert (held["waiting"], held["delayed"], held["active"], held["paused"]) == (3, 1, 0, False)
    done = client.post("/jobs/add", json={"a": 1, "b": 2}).json()["jobId"]
    broken = client.post("/jobs/flaky", json={"key": "figures", "failures": 99}).json()["jobId"]
    jobs.wait(done, timeout_s=15)
    jobs.wait(broken, timeout_s=15)
    test_queue = figures(client, "test")
    assert (test_queue["completed"], test_queue["failed"]) == (1, 1)


def test_purge_empties_the_queue_and_its_delay_queue_and_cancels_their_jobs(
    client: TestClient, jobs: Jobs, empty_held_queue: str
) -> None:
    waiting = [client.post("/jobs/held", json={"key": "purged"}).json()["jobId"] for _ in range(4)]
    delayed = client.post("/jobs/held?delay=60000", json={"key": "purged"}).json()["jobId"]
    response = client.post(f"/queues/{empty_held_queue}/purge")
    assert response.status_code == 202
    assert response.json() == {"queue": empty_held_queue, "messages": 5, "cancelled": 5}
    after = figures(client, empty_held_queue)
    assert (after["waiting"], after["delayed"]) == (0, 0)
    for job_id in [*waiting, delayed]:
        record = jobs.get(job_id)
        assert record.state is JobState.CANCELLED
        assert record.failedReason == "purged"
    # Nothing is left to run: a worker started now finds no work, and no job of the purged queue runs.
    sentinel = client.post("/jobs/held", json={"key": "after-purge"}).json()["jobId"]
    with held_worker():
        jobs.wait(sentinel, timeout_s=20)
    assert redis_client.lrange("test:order:purged", 0, -1) == []


def test_purge_of_an_unknown_queue_is_404(client: TestClient) -> None:
    response = client.post("/queues/no-such-queue/purge")
    assert response.status_code == 404
    assert response.json() == {"detail": "Unknown queue: no-such-queue"}


def test_a_high_priority_job_is_taken_before_low_ones_already_waiting(
    client: TestClient, jobs: Jobs, empty_held_queue: str
) -> None:
    low = [client.post("/jobs/held?priority=low", json={"key": "priority"}).json()["jobId"] for _ in range(5)]
    high = client.post("/jobs/held?priority=high", json={"key": "priority"}).json()["jobId"]
    assert jobs.get(high).priority == "high" and jobs.get(low[0]).priority == "low"
    with held_worker(threads=1):
        for job_id in [*low, high]:
            jobs.wait(job_id, timeout_s=20)
    order = redis_client.lrange("test:order:priority", 0, -1)
    assert order[0] == high, order
    assert order[1:] == low
