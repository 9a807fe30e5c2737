"""A worker stopped while Redis is down exits within its shutdown timeout; no job is lost or recorded twice."""

from __future__ import annotations

import os
import signal
import time
import uuid

from service.store.job_store import JobStore
from tests.reliability.harness import wait_for
from tests.service.test_hook_failures import finished, queue_counts, starts, states_in_history
from tests.support.chaos_actors import QUEUE, tally
from tests.support.own_redis import OwnRedis
from tests.support.workers import WorkerProcess

SHUTDOWN_TIMEOUT_S = 3
JOBS = 12


def test_a_worker_sigtermed_during_a_redis_outage_exits_in_time_and_every_job_completes_once_afterwards() -> None:
    run = uuid.uuid4().hex[:8]
    # Persistence on every write, so the records the worker wrote before the kill come back with the server.
    with OwnRedis("--appendonly", "yes", "--appendfsync", "always") as server:
        own_store = JobStore(server.client())
        env = {
            "REDIS_URL": server.url,
            "TALLY_REDIS_URL": os.environ["REDIS_URL"],
            "WORKER_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S),
            "JOB_LEASE_MS": "4000",  # the dead worker's leases lapse soon, so their jobs' copies need not wait long
        }

        def worker() -> WorkerProcess:
            return WorkerProcess(threads=4, queues=[QUEUE], env=env, modules=["tests.support.chaos_actors"])

        first = worker().start()
        try:
            ids = [tally.send(run=run, ms=1500).message_id for _ in range(JOBS)]
            assert wait_for(lambda: len(starts(run)) >= 4, timeout=20), starts(run)
            server.kill()
            assert first.proc is not None
            first.proc.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            assert wait_for(lambda: first.proc is not None and first.proc.poll() is not None, timeout=60), (
                first.output()[-4000:]
            )
            took = time.monotonic() - stopped_at
        finally:
            first.kill()
        assert took <= SHUTDOWN_TIMEOUT_S + 8, f"the worker took {took:.1f}s to stop\n{first.output()[-4000:]}"
        assert len(finished(run)) >= 1  # some jobs finished while Redis was down: their outcome had to wait

        restarted = time.monotonic()
        server.start()
        with worker():
            assert wait_for(lambda: all(own_store.state_of(i) == "completed" for i in ids), timeout=60), {
                i: own_store.state_of(i) for i in ids
            }
            assert wait_for(lambda: queue_counts() == (0, 0), timeout=15), queue_counts()
            recovered = time.monotonic() - restarted
        print(f"stopped in {took:.1f}s; all {JOBS} completed {recovered:.1f}s after Redis came back")
        for job_id in ids:
            assert states_in_history(own_store, job_id).count("completed") == 1, states_in_history(own_store, job_id)
