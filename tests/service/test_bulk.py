"""Bulk actions in the service layer, on the real RabbitMQ and Redis: a dry run counts exactly what the action then
does; a run taken over after its process died finishes what it had begun (a reopened job's message published again,
never a job lost); a lease passes to another process only once it lapsed; a process that lost it writes nothing."""

from __future__ import annotations

import collections
import os
import socket
import time
from collections.abc import Iterator

import pytest
from dramatiq.common import q_name

from service.bootstrap import redis_client, services, store
from service.domain.bulk_action import BulkAction, BulkProgress, BulkState
from service.domain.job_filter import JobFilter
from service.domain.states import JobState
from service.ops.bulk import WATCH_S, BulkActions
from service.store import keys
from service.store.bulk_store import BulkStore, lease_key
from tests.support.bulk_actors import QUEUE, recorded_jobs
from tests.support.graveyard import bury, dead_ids, empty, read_queue
from tests.support.web import WebProcess


@pytest.fixture
def bulk() -> Iterator[BulkActions]:
    empty(QUEUE)
    yield services().bulk
    empty(QUEUE)


def queued_runs() -> collections.Counter[tuple[str, int]]:
    """(job id, run) of every message waiting in the test queue (no worker consumes it here)."""
    return collections.Counter(
        (letter.job_id, int(letter.message.options["job_run"]))
        for letter in read_queue(q_name(QUEUE))
        if letter.message is not None
    )


def wait_finished(bulk: BulkActions, bulk_id: str, timeout_s: float = 20) -> BulkProgress:
    deadline = time.monotonic() + timeout_s
    while not (progress := bulk.progress(bulk_id)).finished:
        assert time.monotonic() < deadline, progress
        time.sleep(0.05)
    return progress


def test_a_retry_acts_on_exactly_the_failed_and_cancelled_jobs_its_dry_run_counted(bulk: BulkActions) -> None:
    timeouts = recorded_jobs(3, JobState.FAILED, reason="TimeoutError: 30 s")
    refused = recorded_jobs(2, JobState.FAILED, reason="refused")
    cancelled = recorded_jobs(1, JobState.CANCELLED, reason="cancelled")
    recorded_jobs(2, JobState.QUEUED)
    recorded_jobs(1, JobState.COMPLETED)
    everything = JobFilter(actor="bulk_target")

    assert bulk.count(everything, BulkAction.RETRY) == 6
    assert bulk.count(JobFilter(reason="timeouterror"), BulkAction.RETRY) == 3
    assert bulk.count(everything, BulkAction.CANCEL) == 2
    done = bulk.run_here(everything, BulkAction.RETRY)

    assert (done.state, done.total, done.done, done.acted, done.skipped) == (BulkState.DONE, 6, 6, 6, 0)
    assert done.finished_at is not None and done.filter == everything
    retried = [*timeouts, *refused, *cancelled]
    assert all(store.get(job_id).state is JobState.QUEUED for job_id in retried)  # type: ignore[union-attr]
    assert queued_runs() == collections.Counter((job_id, 1) for job_id in retried)  # one message each, run 1
    assert bulk.count(everything, BulkAction.RETRY) == 0


def test_a_cancel_acts_on_the_waiting_and_running_jobs_it_counted(bulk: BulkActions) -> None:
    waiting = recorded_jobs(3, JobState.QUEUED, account="acme") + recorded_jobs(1, JobState.DELAYED, account="acme")
    running = recorded_jobs(1, JobState.ACTIVE, account="acme")
    recorded_jobs(2, JobState.FAILED, account="acme")
    others = recorded_jobs(2, JobState.QUEUED, account="other")
    acme = JobFilter(key="acme")

    assert bulk.count(acme, BulkAction.CANCEL) == 5
    done = bulk.run_here(acme, BulkAction.CANCEL)

    assert (done.total, done.acted, done.skipped) == (5, 5, 0)
    assert all(store.get(job_id).state is JobState.CANCELLED for job_id in waiting)  # type: ignore[union-attr]
    assert store.cancel_requested(running[0])  # asked to stop; its worker ends it cancelled
    assert all(store.get(job_id).state is JobState.QUEUED for job_id in others)  # type: ignore[union-attr]


def test_a_requeue_dead_sends_back_the_dead_letters_of_the_matching_jobs_only(bulk: BulkActions) -> None:
    mine = bury("bulk_target", [{"n": i} for i in range(4)], reason="PermanentError: mailbox full")
    theirs = bury("bulk_target", [{"n": 9}], reason="PermanentError: no route")
    no_letter = recorded_jobs(2, JobState.FAILED, reason="PermanentError: mailbox full")
    full = JobFilter(reason="Mailbox Full")

    assert bulk.count(full, BulkAction.REQUEUE_DEAD) == 4  # the two failed jobs without a dead letter are not counted
    assert bulk.count(full, BulkAction.RETRY) == 6
    done = bulk.run_here(full, BulkAction.REQUEUE_DEAD)

    assert (done.total, done.done, done.acted, done.skipped) == (4, 4, 4, 0)
    assert dead_ids(QUEUE) == theirs
    assert queued_runs() == collections.Counter((job_id, 1) for job_id in mine)
    assert all(store.get(job_id).state is JobState.FAILED for job_id in no_letter)  # type: ignore[union-attr]


def dead_holder() -> str:
    """A lease value naming a process of this machine that does not exist (as after a SIGKILL)."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"{socket.gethostname()}:{pid}/dead"
        pid += 1


def test_a_run_taken_over_publishes_again_the_jobs_its_dead_holder_reopened_and_never_publishes_one_twice(
    bulk: BulkActions,
) -> None:
    failed = recorded_jobs(5, JobState.FAILED, reason="boom")
    runs = bulk.runs
    # Started, then its process died in the middle of its first batch: intents written, three jobs reopened (run 1),
    # nothing published yet. (A run's snapshot is newest first: the five ids in reverse.)
    bulk_id, token = bulk._create(JobFilter(reason="boom"), BulkAction.RETRY)
    snapshot = runs.ids(bulk_id)
    assert sorted(snapshot) == sorted(failed)
    assert runs.begin(bulk_id, token, dict.fromkeys(snapshot, 0))
    assert [r.run for r in store.reopen_many(snapshot[:3])] == [1, 1, 1]
    redis_client.set(lease_key(bulk_id), dead_holder())
    assert queued_runs() == collections.Counter()  # the situation: three jobs queued with no message at all

    assert bulk.adopt() == [bulk_id]  # its holder is gone: taken over at once
    done = wait_finished(bulk, bulk_id)

    assert (done.state, done.acted, done.skipped) == (BulkState.DONE, 5, 0)
    assert queued_runs() == collections.Counter((job_id, 1) for job_id in failed)  # each once, at its run
    assert redis_client.exists(keys.bulk_intents(bulk_id)) == 0


def test_a_run_is_taken_over_only_once_its_lease_lapsed(bulk: BulkActions) -> None:
    # Only this process may take it: the web processes other tests leave running on this Redis (a session's server)
    # do not declare bulk_target, and leave its runs alone (the next test).
    recorded_jobs(2, JobState.FAILED, reason="lapse")
    bulk_id, _ = bulk._create(JobFilter(reason="lapse"), BulkAction.RETRY)
    redis_client.set(lease_key(bulk_id), "another-host:1/theirs", px=600)  # alive, as far as this machine can tell
    assert bulk.adopt() == []
    time.sleep(0.7)
    assert bulk.adopt() == [bulk_id]
    assert wait_finished(bulk, bulk_id).acted == 2


@pytest.mark.slow  # ~5 s: a web process started, and three of its watch rounds
def test_a_web_process_that_does_not_declare_a_runs_jobs_leaves_the_run_to_one_that_does(bulk: BulkActions) -> None:
    retried = recorded_jobs(2, JobState.FAILED, reason="undeclared")
    waiting = recorded_jobs(1, JobState.QUEUED, account="undeclared")
    retry_id, _ = bulk._create(JobFilter(reason="undeclared"), BulkAction.RETRY)
    cancel_id, _ = bulk._create(JobFilter(key="undeclared"), BulkAction.CANCEL)
    gone = dead_holder()
    for bulk_id in (retry_id, cancel_id):
        redis_client.set(lease_key(bulk_id), gone)  # both free to take over at once

    with WebProcess(extra_args=["--log-level", "warning", "--no-access-log"]):  # tests.support.api_app: no bulk_target
        # The situation: it watches, and takes over the cancel, which any process can go on with.
        cancelled = wait_finished(bulk, cancel_id)
        assert (cancelled.state, cancelled.acted) == (BulkState.DONE, 1)
        time.sleep(3 * WATCH_S)
        left = bulk.progress(retry_id)
        assert (left.state, left.done) == (BulkState.RUNNING, 0), left  # neither skipped nor failed there
        assert bulk.runs.holder(retry_id) == gone

    assert bulk.adopt() == [retry_id]  # this process declares bulk_target
    done = wait_finished(bulk, retry_id)
    assert (done.state, done.acted, done.skipped) == (BulkState.DONE, 2, 0)
    assert queued_runs() == collections.Counter((job_id, 1) for job_id in retried)
    assert store.get(waiting[0]).state is JobState.CANCELLED  # type: ignore[union-attr]


def test_a_process_that_lost_the_lease_writes_nothing(bulk: BulkActions) -> None:
    recorded_jobs(2, JobState.FAILED, reason="fenced")
    bulk_id, token = bulk._create(JobFilter(reason="fenced"), BulkAction.RETRY)
    runs = BulkStore(redis_client)
    redis_client.set(lease_key(bulk_id), "another-host:1/theirs", px=10_000)  # it lapsed and another took it
    assert not runs.begin(bulk_id, token, {"x": 0})
    assert not runs.commit(bulk_id, token, 2, 2, 0)
    assert not runs.finish(bulk_id, token, BulkState.DONE.value)
    assert bulk.progress(bulk_id).done == 0 and redis_client.exists(keys.bulk_intents(bulk_id)) == 0
    assert bulk_id in runs.running()
