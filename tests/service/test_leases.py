"""A job held by a live worker is not started again by a redelivery; one whose worker keeps dying is stopped."""

from __future__ import annotations

import time

from service import keys
from service.jobs import Jobs
from service.states import JobState

CREATE = {"jobId": "L1", "actor": "add", "queue": "test", "data": "{}", "createdMs": 1, "createdAt": "x"}


def test_starting_a_job_takes_its_lease_and_finishing_gives_it_back(jobs: Jobs) -> None:
    assert jobs.store.transition("L1", JobState.ACTIVE, create=CREATE, lease=("host:1", 5000)).applied
    assert jobs.store.client.get(keys.lease("L1")) == "host:1"
    assert jobs.store.transition("L1", JobState.COMPLETED).applied
    assert jobs.store.client.exists(keys.lease("L1")) == 0


def test_a_second_delivery_of_an_attempt_under_a_live_lease_is_told_it_runs_elsewhere(jobs: Jobs) -> None:
    jobs.store.transition("L1", JobState.ACTIVE, create=CREATE, lease=("host:1", 5000))
    again = jobs.store.transition("L1", JobState.ACTIVE, lease=("host:2", 5000))
    assert not again.applied and again.state == "running"
    assert 0 < again.lease_left_ms <= 5000
    assert jobs.store.get("L1").attempts == 1  # type: ignore[union-attr]


def test_a_lapsed_lease_is_taken_over_and_counted_as_a_restart(jobs: Jobs) -> None:
    first = jobs.store.transition("L1", JobState.ACTIVE, create=CREATE, lease=("host:1", 50))
    assert first.restarts == 0
    time.sleep(0.1)
    taken = jobs.store.transition("L1", JobState.ACTIVE, lease=("host:2", 5000))
    assert taken.applied and taken.restarts == 1
    assert jobs.store.client.get(keys.lease("L1")) == "host:2"


def test_a_new_attempt_starts_its_restart_count_afresh(jobs: Jobs) -> None:
    jobs.store.transition("L1", JobState.ACTIVE, create=CREATE)
    assert jobs.store.transition("L1", JobState.ACTIVE).restarts == 1
    assert jobs.store.transition("L1", JobState.DELAYED, retries=1).applied
    assert jobs.store.transition("L1", JobState.ACTIVE, retries=1).restarts == 0
