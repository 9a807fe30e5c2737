"""SIGKILL a worker process every few seconds while jobs run: none is lost, none is left active."""

from __future__ import annotations

import random
import threading
import uuid

import pytest

from service.ops.jobs import Jobs
from tests.reliability.harness import (
    REPORTS,
    FaultReport,
    Fleet,
    Tally,
    scale,
    summarise,
    wait_until_final,
    worker_env,
)
from tests.support.chaos_actors import tally

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

THREADS = 4
LEASE_MS = 5000


def test_jobs_survive_worker_processes_killed_every_few_seconds(jobs: Jobs) -> None:
    run = uuid.uuid4().hex[:8]
    total = scale(1000)
    report = FaultReport("SIGKILL a worker process every 1.5 s (2 workers x 4 threads)", "all complete, none active")
    # A 5 s lease (30 s by default) so that the jobs of killed workers are taken over within the test's time.
    with Fleet(2, threads=THREADS, env={**worker_env(), "JOB_LEASE_MS": str(LEASE_MS)}) as fleet:
        stop = threading.Event()

        def chaos() -> None:
            rng = random.Random(run)
            while not stop.wait(1.5):
                index = rng.randrange(len(fleet.workers))
                fleet.kill_one(index)
                # Dramatiq exits when one of its processes dies; restart it as systemd or Kubernetes would.
                fleet.wait_for_exit(index)
                fleet.restart_dead()

        killer = threading.Thread(target=chaos, daemon=True)
        killer.start()
        try:
            ids = [tally.send(run=run, ms=100).message_id for _ in range(total)]
            report.sent = total
            states, took = wait_until_final(jobs.store, ids, timeout=60 + total / 10)
        finally:
            stop.set()
            killer.join(60)
        kills = len(fleet.killed_pids)
        killed_at = dict(fleet.killed_at)
    counts = summarise(states)
    tallied = Tally.read(run)
    interrupted = tallied.interrupted(killed_at)
    twice = tallied.ran_twice(killed_at)
    finished_twice = tallied.twice()
    report.completed = counts["completed"]
    report.lost = total - counts["completed"]
    report.run_twice = len({later.job_id for _, later in twice})
    report.notes.append(f"{kills} kills in {took:.0f} s hit {len(interrupted)} running jobs; states {dict(counts)}")
    report.notes.append(f"{len(finished_twice)} jobs finished twice, each after its first process was killed")
    REPORTS.append(report)

    # The situation was reached: kills landed while jobs were running, and those jobs ran again elsewhere.
    assert kills >= 3, f"only {kills} kills happened; the test did not exercise anything"
    assert interrupted, f"none of the {kills} kills hit a running job; the test did not exercise anything"
    assert counts == {"completed": total}, counts
    assert all(tallied.executions[job_id][-1].finished is not None for job_id in ids)
    # Never twice, from the timestamps: a job runs again only after the process of its previous execution was
    # killed (after that execution started, before the next one did). Two executions that overlap in time, or a
    # second one after a first that finished in a process that lived on (so recorded its completion), fail here.
    assert twice == [], twice[:5]
    # A job interrupted by a kill is taken over only once its lease lapsed: the lease was renewed at most a third of
    # JOB_LEASE_MS before the kill, so at least two thirds of it remained (half, to allow for a slow renewal).
    waits = []
    for execution in interrupted:
        runs = tallied.executions[execution.job_id]
        later = runs[runs.index(execution) + 1]
        waits.append(later.started - killed_at[execution.pid])
    report.notes.append(f"interrupted jobs taken over {min(waits):.1f}-{max(waits):.1f} s after the kill")
    assert min(waits) >= LEASE_MS / 2000, sorted(waits)[:5]
    records = [jobs.get(job_id) for job_id in ids]
    extra_attempts = sum(r.attempts for r in records) - total
    assert all(r.attempts >= 1 and r.finishedAt for r in records)
    assert 0 <= extra_attempts <= kills * THREADS, (extra_attempts, kills)
    report.notes.append(f"{extra_attempts} extra attempts")
