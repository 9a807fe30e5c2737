"""Jobs that burn CPU, never return, exhaust memory or get their process killed: stopped, failed, others go on."""

from __future__ import annotations

import threading
import uuid

import pytest

from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.reliability.harness import REPORTS, FaultReport, Fleet, worker_env
from tests.support.chaos_actors import crash, hog, spin, tally, tally_client, tally_key

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def test_jobs_that_never_return_are_stopped_by_the_time_limit_while_others_keep_running(jobs: Jobs) -> None:
    run = uuid.uuid4().hex[:8]
    with Fleet(1, threads=4):
        hogs = [spin.send(mode="cpu").message_id for _ in range(2)] + [spin.send(mode="sleep").message_id]
        others = [tally.send(run=run, ms=0).message_id for _ in range(10)]
        finished = [jobs.wait(job_id, timeout_s=30) for job_id in others]
        stopped = [jobs.wait(job_id, timeout_s=30) for job_id in hogs]
    REPORTS.append(
        FaultReport(
            "2 CPU-burning + 1 never-returning job (6 s limit), 10 others on the 4th thread",
            "limit stops them; the others finish first",
            sent=13,
            completed=sum(r.state is JobState.COMPLETED for r in finished),
            notes=[f"stopped: {sorted({r.failedReason or '' for r in stopped})}"],
        )
    )
    assert all(r.state is JobState.COMPLETED for r in finished)
    assert all(r.state is JobState.FAILED and "TimeLimitExceeded" in (r.failedReason or "") for r in stopped)
    # No starvation: every other job was done before the first runaway job was stopped.
    assert max(r.finishedAt or "" for r in finished) < min(r.finishedAt or "" for r in stopped)


def test_a_job_that_exhausts_its_memory_fails_with_a_memory_error_and_the_worker_goes_on(jobs: Jobs) -> None:
    run = uuid.uuid4().hex[:8]
    with Fleet(1, threads=2, env={**worker_env(), "CHAOS_MEMORY_LIMIT_MB": "512"}) as fleet:
        pids = fleet.workers[0].child_pids()
        greedy = jobs.wait(hog.send(megabytes=4096).message_id, timeout_s=30)
        after = jobs.wait(tally.send(run=run, ms=0).message_id, timeout_s=30)
        assert fleet.workers[0].child_pids() == pids
    assert greedy.state is JobState.FAILED
    assert greedy.failedReason == "MemoryError", greedy.failedReason
    assert after.state is JobState.COMPLETED


def test_a_job_that_gets_its_worker_killed_every_time_is_failed_after_three_runs(jobs: Jobs) -> None:
    run = uuid.uuid4().hex[:8]
    with Fleet(1, threads=2, env={**worker_env(), "JOB_LEASE_MS": "2000"}) as fleet:
        stop = threading.Event()

        def supervise() -> None:
            while not stop.wait(0.3):
                fleet.restart_dead()

        supervisor = threading.Thread(target=supervise, daemon=True)
        supervisor.start()
        try:
            doomed = jobs.wait(crash.send(run=run).message_id, timeout_s=90)
            after = jobs.wait(tally.send(run=run, ms=0).message_id, timeout_s=30)
        finally:
            stop.set()
            supervisor.join(30)
    runs = tally_client.llen(tally_key(run, "starts")) - 1  # the last start is the tally job's
    REPORTS.append(
        FaultReport(
            "a job SIGKILLs its own worker every run (as the OOM killer would)",
            "failed after 3 runs, not a crash loop",
            sent=2,
            completed=int(after.state is JobState.COMPLETED),
            notes=[f"the job ran {runs} times; {doomed.failedReason}"],
        )
    )
    assert doomed.state is JobState.FAILED
    assert "died 3 times" in (doomed.failedReason or ""), doomed.failedReason
    assert runs == 3
    assert after.state is JobState.COMPLETED
