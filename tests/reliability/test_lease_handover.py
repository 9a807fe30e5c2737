"""A job's lease decides who runs it: a redelivered copy waits for a live holder, and takes over a dead one only
once the lease has run out. Both shown end to end, with real workers and the execution tally."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.store import keys
from tests.reliability.harness import CHAOS_MODULES, Tally, proxies, wait_for, worker_env
from tests.support.chaos_actors import tally, tally_client, tally_key
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.reliability]

#: Short, so that the lease wait and the takeover happen within seconds (30 s by default).
LEASE_MS = 2000
WAITING = "is running in another worker"


def chaos_worker(env: dict[str, str]) -> WorkerProcess:
    env = {**env, "JOB_LEASE_MS": str(LEASE_MS)}
    return WorkerProcess(processes=1, threads=2, queues=["chaos"], env=env, modules=CHAOS_MODULES).start(timeout=60)


def started_by(run: str) -> list[int]:
    """The pids that started executions of this run's jobs, in order."""
    return [int(entry.split()[1]) for entry in tally_client.lrange(tally_key(run, "starts"), 0, -1)]


def test_a_copy_redelivered_while_the_job_runs_waits_for_the_live_workers_lease(jobs: Jobs) -> None:
    run = uuid.uuid4().hex[:8]
    with proxies(5672) as (rabbit,):
        # Worker A talks to RabbitMQ through the proxy, to Redis directly: cutting the proxy is a broker blip that
        # leaves A running its job and renewing its lease.
        a = chaos_worker(worker_env(rabbit=rabbit))
        b: WorkerProcess | None = None
        try:
            job_id = tally.send(run=run, ms=3 * LEASE_MS).message_id
            assert wait_for(lambda: len(started_by(run)) == 1, timeout=20) is not None, "worker A never started it"
            (a_pid,) = started_by(run)
            assert a_pid in a.child_pids()
            b = chaos_worker(worker_env())
            rabbit.down()  # RabbitMQ sees A's connection close and hands the unacknowledged message to B
            # The situation was reached: B received the copy while A still ran the job, and B waited.
            waited = wait_for(lambda: WAITING in b.output(), timeout=20)  # type: ignore[union-attr]
            assert waited is not None, b.output()[-3000:]
            assert tally_client.llen(tally_key(run, "done")) == 0, "A finished before B saw the copy"
            record = jobs.wait(job_id, timeout_s=30)
        finally:
            rabbit.up()
            a.stop(timeout=20)
            if b is not None:
                b.stop(timeout=20)
    tallied = Tally.read(run)
    assert record.state is JobState.COMPLETED
    assert record.attempts == 1, record.history
    assert started_by(run) == [a_pid], "B ran the job alongside A instead of waiting for A's lease"
    assert tallied.done[job_id] == 1
    # B's copy, looked at again after A finished, found the job final and was dropped, not run.
    assert f"skipping {job_id}: job is completed" in b.output(), b.output()[-3000:]


def test_a_job_whose_worker_was_killed_is_taken_over_only_once_its_lease_ran_out(jobs: Jobs) -> None:
    run = uuid.uuid4().hex[:8]
    workers = [chaos_worker(worker_env()), chaos_worker(worker_env())]
    try:
        job_id = tally.send(run=run, ms=LEASE_MS).message_id
        assert wait_for(lambda: len(started_by(run)) == 1, timeout=20) is not None, "no worker started the job"
        (first_pid,) = started_by(run)
        holder = next(w for w in workers if first_pid in w.child_pids())
        other = next(w for w in workers if w is not holder)
        other_pids = other.child_pids()
        os.kill(first_pid, signal.SIGKILL)
        killed_at = time.time()
        left_ms = jobs.store.client.pttl(keys.lease(job_id))
        lease_ends = time.time() + left_ms / 1000
        # The situation was reached: the job was killed mid-run (it never finished there) under a live lease.
        assert left_ms > 0, "the killed worker held no lease"
        assert tally_client.llen(tally_key(run, "done")) == 0
        record = jobs.wait(job_id, timeout_s=30)
    finally:
        for worker in workers:
            worker.stop(timeout=20)
    tallied = Tally.read(run)
    (killed, taken_over) = tallied.executions[job_id]
    assert killed.pid == first_pid and killed.finished is None
    assert taken_over.pid in other_pids and taken_over.finished is not None
    assert record.state is JobState.COMPLETED and record.attempts == 2, record.history
    assert WAITING in other.output(), "the other worker never saw the copy while the lease was live"
    # No earlier than the lease's end, and not long after it either (the copy looks again 1 s after the lease).
    assert taken_over.started >= lease_ends, (taken_over.started - lease_ends, killed_at)
    assert taken_over.started - lease_ends < 5, taken_over.started - lease_ends
