"""A job held by a live worker is not started again by a redelivery; one whose worker keeps dying is stopped."""

from __future__ import annotations

import time

import pytest
import redis
from dramatiq import Message

from service.bootstrap import broker
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.store import keys
from service.store.job_store import HeldLease, JobStore
from service.store.record_fields import PARENT_ATTEMPT
from service.worker.middleware.in_hand import JobsInHand
from service.worker.middleware.lease import JobLease
from tests.support.own_redis import OwnRedis

CREATE = {"jobId": "L1", "actor": "add", "queue": "test", "data": "{}", "createdMs": 1, "createdAt": "x"}


def test_starting_a_job_takes_its_lease_and_finishing_gives_it_back(jobs: Jobs) -> None:
    assert jobs.store.transition("L1", JobState.ACTIVE, create=CREATE, lease=("host:1", 5000)).applied
    assert jobs.store.client.get(keys.lease("L1")) == "host:1/1"
    assert jobs.store.transition("L1", JobState.COMPLETED).applied
    assert jobs.store.client.exists(keys.lease("L1")) == 0


def test_a_second_delivery_of_an_attempt_under_a_live_lease_is_told_it_runs_elsewhere(jobs: Jobs) -> None:
    jobs.store.transition("L1", JobState.ACTIVE, create=CREATE, lease=("host:1", 5000))
    again = jobs.store.transition("L1", JobState.ACTIVE, lease=("host:2", 5000))
    assert again.running and again.state == "active"
    assert 0 < again.lease_left_ms <= 5000
    assert jobs.store.get("L1").attempts == 1  # type: ignore[union-attr]


def test_a_lapsed_lease_is_taken_over_and_counted_as_a_restart(jobs: Jobs) -> None:
    first = jobs.store.transition("L1", JobState.ACTIVE, create=CREATE, lease=("host:1", 50))
    assert first.restarts == 0
    time.sleep(0.1)
    taken = jobs.store.transition("L1", JobState.ACTIVE, lease=("host:2", 5000))
    assert taken.applied and taken.restarts == 1
    assert jobs.store.client.get(keys.lease("L1")) == "host:2/2"


def test_a_new_attempt_starts_its_restart_count_afresh(jobs: Jobs) -> None:
    jobs.store.transition("L1", JobState.ACTIVE, create=CREATE)
    assert jobs.store.transition("L1", JobState.ACTIVE).restarts == 1
    assert jobs.store.transition("L1", JobState.DELAYED, retries=1).applied
    assert jobs.store.transition("L1", JobState.ACTIVE, retries=1).restarts == 0


def test_each_start_of_an_attempt_gets_a_new_fencing_token_and_the_lease_carries_it(jobs: Jobs) -> None:
    first = jobs.store.transition("L1", JobState.ACTIVE, create=CREATE, lease=("host:1", 50))
    time.sleep(0.1)
    taken = jobs.store.transition("L1", JobState.ACTIVE, lease=("host:2", 5000))
    assert (first.token, taken.token) == (1, 2)
    assert jobs.store.client.get(keys.lease("L1")) == "host:2/2"


def test_a_superseded_attempt_cannot_record_its_outcome(jobs: Jobs) -> None:
    jobs.store.transition("L1", JobState.ACTIVE, create=CREATE, lease=("host:1", 50))
    time.sleep(0.1)
    jobs.store.transition("L1", JobState.ACTIVE, lease=("host:2", 5000))  # the copy takes over: token 2

    for state in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED):
        stale = jobs.store.transition("L1", state, fields={"result": "1"}, token=1)
        assert stale.fenced and not stale.applied and stale.token == 2
    stale_retry = jobs.store.transition("L1", JobState.DELAYED, retries=1, token=1)
    assert stale_retry.fenced
    record = jobs.store.get("L1")
    assert record is not None and record.state is JobState.ACTIVE and record.result is None
    assert jobs.store.client.get(keys.lease("L1")) == "host:2/2"  # the holder keeps its lease

    assert jobs.store.transition("L1", JobState.COMPLETED, fields={"result": "2"}, token=2).state == "completed"


def test_a_retry_published_by_a_superseded_attempt_never_starts(jobs: Jobs) -> None:
    jobs.store.transition("L1", JobState.ACTIVE, create=CREATE, lease=("host:1", 50))
    time.sleep(0.1)
    jobs.store.transition("L1", JobState.ACTIVE, lease=("host:2", 5000))  # token 2 runs retry 0
    orphan = jobs.store.transition("L1", JobState.ACTIVE, retries=1, lease=("host:3", 5000), token=1)
    assert orphan.fenced
    assert jobs.store.transition("L1", JobState.DELAYED, retries=1, token=2).applied
    assert jobs.store.transition("L1", JobState.ACTIVE, retries=1, lease=("host:3", 5000), token=2).applied


def test_a_delayed_retry_moved_from_its_delay_queue_keeps_the_token_of_the_attempt_that_published_it(
    jobs: Jobs,
) -> None:
    # When a delayed retry comes due, Dramatiq's consumer thread publishes it again (delay queue -> queue). No
    # attempt of that process holds the job, so the token it carries must travel on, or the fence above is lost.
    leases = JobLease(jobs.store, JobsInHand(), lease_ms=5000)
    due = Message(queue_name="default", actor_name="add", args=(), kwargs={}, options={PARENT_ATTEMPT: 1, "retries": 1})
    leases.before_enqueue(broker, due, None)
    assert due.options[PARENT_ATTEMPT] == 1


def test_renewal_extends_only_the_leases_whose_token_is_still_held_and_reports_the_lost(jobs: Jobs) -> None:
    jobs.store.transition("L1", JobState.ACTIVE, create=CREATE, lease=("host:1", 200))
    jobs.store.transition("L2", JobState.ACTIVE, create={**CREATE, "jobId": "L2"}, lease=("host:1", 200))
    time.sleep(0.25)
    jobs.store.transition("L2", JobState.ACTIVE, lease=("host:2", 5000))  # taken over: token 2, held by host:2

    lost = jobs.store.renew_leases("host:1", 5000, [HeldLease("L1", 1), HeldLease("L2", 1)])
    assert lost == {"L1", "L2"}  # L1 lapsed, L2 is another token's
    assert jobs.store.client.get(keys.lease("L2")) == "host:2/2"
    assert jobs.store.client.exists(keys.lease("L1")) == 0

    jobs.store.transition("L3", JobState.ACTIVE, create={**CREATE, "jobId": "L3"}, lease=("host:1", 300))
    assert jobs.store.renew_leases("host:1", 5000, [HeldLease("L3", 1)]) == set()
    assert jobs.store.client.pttl(keys.lease("L3")) > 4000


def test_a_lease_given_back_alive_lets_the_copy_start_at_once_without_counting_a_restart(jobs: Jobs) -> None:
    jobs.store.transition("L1", JobState.ACTIVE, create=CREATE, lease=("host:1", 5000))
    jobs.store.renew_leases("host:1", 5000, [], [HeldLease("L1", 1)])
    assert jobs.store.client.exists(keys.lease("L1")) == 0
    copy = jobs.store.transition("L1", JobState.ACTIVE, lease=("host:2", 5000))
    assert copy.applied and copy.restarts == 0 and copy.token == 2


def test_a_lease_given_back_after_the_takeover_takes_the_restart_back(jobs: Jobs) -> None:
    jobs.store.transition("L1", JobState.ACTIVE, create=CREATE, lease=("host:1", 50))
    time.sleep(0.1)
    assert jobs.store.transition("L1", JobState.ACTIVE, lease=("host:2", 5000)).restarts == 1
    jobs.store.renew_leases("host:1", 5000, [], [HeldLease("L1", 1)])
    assert jobs.store.client.hget(keys.job("L1"), "restarts") == "0"
    assert jobs.store.client.get(keys.lease("L1")) == "host:2/2"  # the holder's lease is not touched


def test_at_maxmemory_leases_are_renewed_as_long_as_transitions_are_written() -> None:
    with OwnRedis("--maxmemory", "3mb", "--maxmemory-policy", "noeviction") as server:
        client = server.client()
        store = JobStore(client)
        in_hand = JobsInHand()
        leases = JobLease(store, in_hand, lease_ms=60_000)
        in_hand.start(Message(queue_name="test", actor_name="add", args=(), kwargs={}, options={}, message_id="L1"))
        started = store.transition("L1", JobState.ACTIVE, create=CREATE, lease=(leases.holder, 1000))
        leases.hold("L1", started.token, started.asked_at)
        with pytest.raises(redis.exceptions.OutOfMemoryError):  # the situation: Redis refuses plain writes
            for i in range(10_000):
                client.set(f"filler:{i}", "x" * 10_000)

        leases.renew()
        assert client.pttl(keys.lease("L1")) > 50_000
        assert store.transition("L1", JobState.COMPLETED, token=started.token).state == "completed"
