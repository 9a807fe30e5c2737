"""Limits per key hold across worker processes: key_concurrency, key_rate_limit and throttle (delay or drop). A limited
job waits without using an attempt; a slot held by a worker killed with SIGKILL comes back within the lease; a check
Redis cannot answer keeps the job from running until it can. Real RabbitMQ and Redis, two worker processes or more."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import dramatiq
import pytest
from dramatiq.common import dq_name
from pydantic import BaseModel

from service.bootstrap import broker, redis_client, settings
from service.domain import limits
from service.domain.limits import InvalidLimit, Kind, Split
from service.domain.records import JobRecord
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.store import keys
from service.worker.middleware.lease import JobLease
from service.worker.middleware.limits import MAX_WAIT_MS, Limits
from service.worker.typed_actor import job
from tests.reliability.harness import through
from tests.service.test_hook_failures import queue_counts
from tests.support import limit_actors
from tests.support.graveyard import empty
from tests.support.limit_actors import QUEUE, notes, notes_key
from tests.support.proxy import FaultProxy
from tests.support.workers import ROOT, WorkerProcess

MODULES = ["tests.support.limit_actors"]
#: Short, so that a slot of a killed worker lapses within seconds (30 s by default).
LEASE_MS = 3000


@pytest.fixture(autouse=True)
def empty_limit_queue() -> Iterator[None]:
    """No worker consumes the queue unless a test starts one; what a test leaves behind is not the next one's."""
    empty(QUEUE)
    yield
    empty(QUEUE)


@pytest.fixture(scope="module")
def workers() -> Iterator[WorkerProcess]:
    """Two worker processes of 4 threads on the queue, for the tests that only need jobs to run."""
    with WorkerProcess(processes=2, threads=4, queues=[QUEUE], modules=MODULES) as process:
        yield process


def starts(actor: str, key: str) -> list[tuple[int, int, int, int]]:
    """(ms, pid, jobs of the key running then, n) of every start of `actor` for `key`, in order."""
    rows = [entry.split() for entry in notes.lrange(notes_key(actor, key, "starts"), 0, -1)]
    return sorted((int(ms), int(pid), int(now), int(n)) for ms, pid, now, n in rows)


def settled(jobs: Jobs, job_ids: list[str], timeout_s: float = 60) -> list[JobRecord]:
    return [jobs.wait(job_id, timeout_s=timeout_s) for job_id in job_ids]


def busiest_window(stamps: list[int], period_ms: int) -> int:
    """The most starts within any window of `period_ms` (starting at a start)."""
    return max(sum(1 for s in stamps if t <= s < t + period_ms) for t in stamps)


def waited(record: JobRecord) -> int:
    """How often the job went back to wait before it first started (its `delayed` entries before `active`)."""
    before = []
    for entry in record.history:
        if entry.state is JobState.ACTIVE:
            break
        before.append(entry)
    return sum(1 for entry in before if entry.state is JobState.DELAYED)


def wait_for(condition: Any, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- declaration and configuration -------------------------------------------------------------------------------------


def test_limit_options_are_checked_when_the_actor_is_declared_naming_the_option() -> None:
    class Payload(BaseModel):
        account_id: str

    for options, why in (
        ({"key_concurrency": 0}, r"key_concurrency=0: must be a positive whole number"),
        ({"key_concurrency": "2"}, r"key_concurrency='2': must be a positive whole number"),
        ({"key_rate_limit": "fast"}, r"key_rate_limit='fast': must be a rate"),
        ({"throttle": "5/m", "throttle_mode": "later"}, r"throttle_mode='later': must be 'delay' or 'drop'"),
        ({"concurrency_limit": 2, "concurrency_key": "host"}, r"concurrency_key='host': must be a function"),
    ):
        with pytest.raises(InvalidLimit, match=f"^limit_checked: {why}"):
            job(Payload, queue=QUEUE, key="account_id", actor_name="limit_checked", **options)(lambda payload: None)
        assert "limit_checked" not in broker.get_declared_actors()
    (throttle,) = limits.limits_of({"throttle": "5/m", "throttle_mode": "drop"})
    assert (throttle.kind, throttle.count, throttle.period_ms, throttle.split, throttle.drops) == (
        Kind.RATE, 5, 60_000, Split.JOB_KEY, True,
    )  # fmt: skip


def test_job_limits_overrides_a_declared_limit_and_a_bad_one_stops_the_process_with_one_line() -> None:
    declared = {"key_concurrency": 2, "key_rate_limit": "10/s"}
    (concurrency,) = limits.limits_of(declared, {"key_concurrency": 4, "key_rate_limit": ""})
    assert (concurrency.scope, concurrency.count) == ("key_concurrency", 4)
    assert limits.limits_of(declared, {"key_concurrency": 0, "key_rate_limit": None}) == ()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for value, says in (
        ('{"deliver_webhook": {"key_concurrency": -1}}', "deliver_webhook.key_concurrency=-1: must be a positive"),
        ('{"deliver_webhook": {"key_limit": 4}}', "deliver_webhook.key_limit: not a limit option"),
        ('{"deliver_webhook": {"throttle": "5 a minute"}}', "deliver_webhook.throttle='5 a minute': must be a rate"),
        ("key_concurrency=4", "must be JSON"),
    ):
        started = subprocess.run([sys.executable, "-c", "import service.actors"], cwd=ROOT,
                                 env={**env, "JOB_LIMITS": value}, capture_output=True, text=True)  # fmt: skip
        assert started.returncode == 2, started.stderr
        lines = started.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("invalid configuration: JOB_LIMITS: "), lines
        assert says in lines[0]


def test_the_worker_takes_the_slots_life_from_job_lease_ms_and_renews_slots_with_the_leases() -> None:
    (middleware,) = [m for m in broker.middleware if isinstance(m, Limits)]
    (lease,) = [m for m in broker.middleware if isinstance(m, JobLease)]
    assert middleware.lease_ms == settings.job_lease_ms
    assert middleware.renew in lease.renewed_with
    # After the keys and flow control, before the lease is taken and "active" written.
    names = [type(m).__name__ for m in broker.middleware]
    assert names.index("JobKeys") < names.index("Singleton") < names.index("Debounce") < names.index("Limits")
    assert names.index("Limits") < names.index("JobLease") < names.index("StatusMiddleware")


def test_a_job_with_no_key_is_not_limited_per_key() -> None:
    (middleware,) = [m for m in broker.middleware if isinstance(m, Limits)]
    message = limit_actors.one_per_key.message_with_options(kwargs={"n": 1})
    assert "key" not in message.options
    limit = next(iter(middleware._by_actor["one_per_key"]))
    assert middleware._claim(broker, limit, dramatiq.broker.MessageProxy(message)) is None


# -- faults: workers of their own, the queue to themselves (so before the tests that start the module's) ------------


def slot_holders(actor: str, key: str) -> list[str]:
    """The processes ("<host>:<pid>") holding a slot of the key's key_concurrency."""
    members = redis_client.zrange(keys.limit(limits.KEY_CONCURRENCY, f"{actor}:{key}"), 0, -1)
    return [str(member).split("/")[0] for member in members]


@pytest.mark.slow
def test_a_slot_held_by_a_worker_killed_with_sigkill_comes_back_within_the_lease(jobs: Jobs) -> None:
    env = {"JOB_LEASE_MS": str(LEASE_MS)}
    first = WorkerProcess(processes=1, threads=2, queues=[QUEUE], env=env, modules=MODULES).start()
    second = WorkerProcess(processes=1, threads=2, queues=[QUEUE], env=env, modules=MODULES).start()
    try:
        held = limit_actors.one_per_key.send(account_id="k", n=1, seconds=60, first_only=True).message_id
        wait_for(lambda: len(starts("one_per_key", "k")) == 1, "the first job to start")
        ((_, pid, _, _),) = starts("one_per_key", "k")
        (holder,) = slot_holders("one_per_key", "k")
        assert holder.endswith(f":{pid}")  # the situation: the slot is held by the process about to be killed
        killed, survivor = (first, second) if pid in first.child_pids() else (second, first)
        assert pid in killed.child_pids()
        later = limit_actors.one_per_key.send(account_id="k", n=2).message_id
        wait_for(lambda: waited(jobs.get(later)) >= 1, "the key's next job to wait for the slot")
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(starts("one_per_key", "k")) >= 2, "a job of the key to start again", timeout_s=60)
        next_start_s = starts("one_per_key", "k")[1][0] / 1000 - killed_at
        print(f"\nthe key's next job started {next_start_s:.2f} s after the holder was killed (lease {LEASE_MS} ms)")
        # Within the lease plus the longest wait between two looks (with its jitter); not JOB_TIME_LIMIT_MS.
        assert next_start_s < (LEASE_MS + MAX_WAIT_MS * 1.25) / 1000 + 2
        records = settled(jobs, [held, later])
        assert all(r.state is JobState.COMPLETED for r in records), [r.history for r in records]
        assert {pid for _, pid, _, _ in starts("one_per_key", "k")[1:]} <= set(survivor.child_pids())
        assert slot_holders("one_per_key", "k") == []  # given back as they ended: no key blocked
    finally:
        first.kill()
        second.stop()


@pytest.mark.slow
def test_when_redis_cannot_be_asked_a_limited_job_does_not_run_and_runs_once_it_can(jobs: Jobs) -> None:
    redis_port = urlsplit(os.environ["REDIS_URL"]).port or 6379
    with FaultProxy(redis_port, name="redis") as proxy:
        env = {"REDIS_URL": through(os.environ["REDIS_URL"], proxy), "LIMIT_NOTES_REDIS_URL": os.environ["REDIS_URL"],
               "JOB_STORE_RETRY_S": "1"}  # fmt: skip
        with WorkerProcess(processes=2, threads=2, queues=[QUEUE], env=env, modules=MODULES) as worker:
            proxy.down()
            job_id = limit_actors.two_per_key.send(account_id="away", n=1).message_id
            # The check was tried, could not be made, and the message went back: twice at least.
            wait_for(lambda: worker.output().count(f"job {job_id} not started") >= 2, "the check to fail", 40)
            refusals = [line for line in worker.output().splitlines() if f"job {job_id} not started" in line]
            assert all("in Limits" in line for line in refusals), refusals
            assert starts("two_per_key", "away") == []
            assert jobs.get(job_id).state is JobState.QUEUED
            proxy.up()
            record = jobs.wait(job_id, timeout_s=40)
    assert (record.state, record.attempts) == (JobState.COMPLETED, 1)
    assert len(starts("two_per_key", "away")) == 1


# -- two worker processes --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_key_concurrency_holds_across_two_worker_processes_and_holds_no_other_key(
    jobs: Jobs, workers: WorkerProcess
) -> None:
    busy = [limit_actors.two_per_key.send(account_id="busy", n=n, seconds=0.4).message_id for n in range(10)]
    other = [limit_actors.two_per_key.send(account_id="other", n=n, seconds=0.4).message_id for n in range(2)]
    records = settled(jobs, busy + other)
    assert all(r.state is JobState.COMPLETED and r.attempts == 1 for r in records)
    busy_starts, other_starts = starts("two_per_key", "busy"), starts("two_per_key", "other")
    assert max(now for _, _, now, _ in busy_starts) == limit_actors.CONCURRENCY  # 8 threads, 2 at a time for the key
    assert len({pid for _, pid, _, _ in busy_starts + other_starts}) == 2  # both processes ran them
    # The other key was not held behind the busy one: it ran both at once, before the busy key's backlog was half done.
    assert max(now for _, _, now, _ in other_starts) == 2
    assert max(ms for ms, _, _, _ in other_starts) < busy_starts[len(busy_starts) // 2][0]
    assert sum(waited(r) for r in records[: len(busy)]) > 0  # the situation: busy jobs did wait


@pytest.mark.slow
def test_key_rate_limit_holds_across_two_worker_processes(jobs: Jobs, workers: WorkerProcess) -> None:
    count, period = limit_actors.RATE_COUNT, limit_actors.RATE_PERIOD_MS
    ids = [limit_actors.rated.send(account_id="r1", n=n).message_id for n in range(12)]
    other = [limit_actors.rated.send(account_id="r2", n=n).message_id for n in range(count)]
    records = settled(jobs, ids + other)
    assert all(r.state is JobState.COMPLETED and r.attempts == 1 for r in records)
    stamps = [ms for ms, _, _, _ in starts("rated", "r1")]
    # Starts are taken by Redis's clock; a job notes its start a few ms later, by a lag that varies from job to job:
    # 150 ms of the window are left to that lag.
    assert busiest_window(stamps, period - 150) <= count, stamps
    assert stamps[-1] - stamps[0] >= (len(stamps) // count - 1) * period - 150  # 12 at 3/s take at least 3 s
    other_stamps = [ms for ms, _, _, _ in starts("rated", "r2")]
    assert max(other_stamps) - min(other_stamps) < period  # the other key's 3 were not held behind r1's backlog
    print(f"\n12 starts at {limit_actors.RATE} across 2 processes took {(stamps[-1] - stamps[0]) / 1000:.2f} s")


@pytest.mark.slow
def test_a_throttle_in_delay_mode_runs_every_job_spaced(jobs: Jobs, workers: WorkerProcess) -> None:
    ids = [limit_actors.throttled.send(account_id="t", n=n).message_id for n in range(6)]
    records = settled(jobs, ids)
    assert all(r.state is JobState.COMPLETED for r in records)
    stamps = [ms for ms, _, _, _ in starts("throttled", "t")]
    assert sorted(n for _, _, _, n in starts("throttled", "t")) == list(range(6))
    assert busiest_window(stamps, 1000 - 150) <= 2, stamps
    assert stamps[-1] - stamps[0] >= 2000 - 150  # 6 at 2/s: three windows


@pytest.mark.slow
def test_a_throttle_in_drop_mode_cancels_the_extra_jobs_acknowledged_and_never_run(
    jobs: Jobs, workers: WorkerProcess
) -> None:
    ids = [limit_actors.throttled_drop.send(account_id="d", n=n).message_id for n in range(6)]
    records = settled(jobs, ids)
    ran = sorted(n for _, _, _, n in starts("throttled_drop", "d"))
    completed = sorted(r.result for r in records if r.state is JobState.COMPLETED)
    assert len(ran) == 2 and ran == completed  # 2 per 3 s, all sent within one window
    dropped = [r for r in records if r.state is not JobState.COMPLETED]
    assert len(dropped) == 4
    for record in dropped:
        assert record.state is JobState.CANCELLED and record.attempts == 0 and record.startedAt is None
        assert record.failedReason == "throttled: at most 2/3s starts per key (key d)"
    # Acknowledged: nothing left in the queue, its delay queue, or in a worker's hands.
    wait_for(lambda: queue_counts(QUEUE) == (0, 0) and queue_counts(dq_name(QUEUE)) == (0, 0), "the queue to empty")
    # A later window has room again.
    again = limit_actors.throttled_drop.send_with_options(kwargs={"account_id": "d", "n": 9}, delay=3100).message_id
    assert jobs.wait(again, timeout_s=30).state is JobState.COMPLETED


@pytest.mark.slow
def test_a_limited_job_waits_without_using_an_attempt_and_is_not_failed(jobs: Jobs, workers: WorkerProcess) -> None:
    holders = [limit_actors.two_per_key.send(account_id="w", n=n, seconds=1.5).message_id for n in range(2)]
    wait_for(lambda: len(starts("two_per_key", "w")) == 2, "both slots of the key to be taken")
    plain = limit_actors.two_per_key.send(account_id="w", n=10).message_id
    failing = limit_actors.two_per_key.send(account_id="w", n=11, fail_first=True).message_id
    plain_record, failing_record = settled(jobs, [plain, failing])
    assert all(r.state is JobState.COMPLETED for r in settled(jobs, holders))
    # The situation: both waited for a slot, several times, while the holders ran.
    assert waited(plain_record) >= 1 and waited(failing_record) >= 1
    assert all(entry.error is None for entry in plain_record.history)
    assert (plain_record.state, plain_record.attempts, plain_record.failedReason) == (JobState.COMPLETED, 1, None)
    # Its one real failure is the only attempt besides the one that succeeded; no wait counted, none failed it.
    assert (failing_record.state, failing_record.attempts) == (JobState.COMPLETED, 2)
    # Its waits, before the retry ran, go on showing the last error (as any delayed retry does), and add none.
    errors = {entry.error for entry in failing_record.history if entry.error}
    assert errors == {"RuntimeError: first attempt fails, as asked"}, failing_record.history
    assert [entry.attempt for entry in failing_record.history if entry.state is JobState.ACTIVE] == [1, 2]
    assert JobState.FAILED not in {entry.state for entry in failing_record.history}
