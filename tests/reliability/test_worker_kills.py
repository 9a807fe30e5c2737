"""SIGKILL a worker process every few seconds while jobs run: none is lost, none is left active."""

from __future__ import annotations

import random
import threading
import uuid

import pytest

from service.jobs import Jobs
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


def test_jobs_survive_worker_processes_killed_every_few_seconds(jobs: Jobs) -> None:
    run = uuid.uuid4().hex[:8]
    total = scale(1000)
    report = FaultReport("SIGKILL a worker process every 1.5 s (2 workers x 4 threads)", "all complete, none active")
    # A 5 s lease (30 s by default) so that the jobs of killed workers are taken over within the test's time.
    with Fleet(2, threads=THREADS, env={**worker_env(), "JOB_LEASE_MS": "5000"}) as fleet:
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
        killed = set(fleet.killed_pids)
    counts = summarise(states)
    tallied = Tally.read(run)
    twice = tallied.twice()
    report.completed = counts["completed"]
    report.lost = total - counts["completed"]
    report.run_twice = len(twice)
    report.notes.append(f"{kills} kills in {took:.0f} s; states {dict(counts)}")
    REPORTS.append(report)

    assert kills >= 3, f"only {kills} kills happened; the test did not exercise anything"
    assert counts == {"completed": total}, counts
    assert all(tallied.done[job_id] >= 1 for job_id in ids)
    # Running twice is only possible when the first run's process was killed after the job body finished and
    # before its completion was recorded: at-least-once delivery, never a duplicate for a healthy worker.
    for job_id in twice:
        assert all(pid in killed for pid in tallied.done_pids[job_id][:-1]), tallied.done_pids[job_id]
    records = [jobs.get(job_id) for job_id in ids]
    extra_attempts = sum(r.attempts for r in records) - total
    assert all(r.attempts >= 1 and r.finishedAt for r in records)
    assert 0 <= extra_attempts <= kills * THREADS, (extra_attempts, kills)
    report.notes.append(f"{extra_attempts} extra attempts")
