"""A bulk retry of 10,000 failed jobs loses none and runs none twice when its web process is SIGKILLed halfway: a new
web process takes the run over from its last committed batch, publishes again the jobs the dead one had reopened
without publishing, and a job whose message went out twice is run once (the worker skips the copy by job id and run).

The 10,000 failed jobs are records written through the store's transitions (tests/support/bulk_actors.py
recorded_jobs), as a worker's failures would leave them, without running 10,000 failing jobs first. A real worker
(two processes) runs the retries as they are published; each run is counted per job id in Redis."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from service.bootstrap import redis_client, services, store
from service.domain.bulk_action import BulkState
from service.domain.states import JobState
from service.store import keys
from tests.support.bulk_actors import QUEUE, RUNS, bulk_worker, recorded_jobs
from tests.support.graveyard import empty
from tests.support.web import WebProcess

COUNT = int(os.environ.get("BULK_KILL_COUNT", "10000"))
#: Completed records are pruned past 1,000 per actor by default: keep them all, to check each one.
KEEP = {"JOB_RETENTION_COMPLETED_COUNT": str(2 * COUNT)}
APP = "tests.support.bulk_app:app"


def poll(url: str, until: str, timeout_s: float) -> dict[str, object]:
    """The run once in state `until`; fails at once, its error first, when it ends in another state."""
    deadline = time.monotonic() + timeout_s
    while True:
        progress: dict[str, object] = httpx.get(url, timeout=5).json()
        if progress["state"] == until:
            return progress
        if progress["state"] != BulkState.RUNNING.value:
            pytest.fail(f"the run ended {progress['state']}, not {until}: error {progress.get('error')!r}; {progress}")
        assert time.monotonic() < deadline, progress
        time.sleep(0.1)


def reopened_in_flight(bulk_id: str) -> list[str]:
    """The states of the jobs of the run's batch in flight that it has reopened already (no longer failed)."""
    in_flight = [str(job_id) for job_id in redis_client.hkeys(keys.bulk_intents(bulk_id))]
    return [row["state"] or "gone" for row in store.fields_of(in_flight, ["state"]) if row["state"] != "failed"]


@pytest.mark.slow  # ~60 s: 10,000 jobs recorded, retried, half before the kill, all run by a real worker
def test_a_bulk_retry_of_10000_failed_jobs_killed_halfway_completes_each_exactly_once() -> None:
    empty(QUEUE)
    ids = recorded_jobs(COUNT, JobState.FAILED, reason="PermanentError: planned failure")
    flt = {"actor": "bulk_target", "state": "failed", "reason": "planned"}
    with bulk_worker(processes=2, threads=8, env=KEEP):
        web = WebProcess(app=APP, env=KEEP).start()
        try:
            dry = httpx.post(
                f"{web.url}/jobs/bulk", json={"filter": flt, "action": "retry", "dryRun": True}, timeout=30
            )
            assert dry.status_code == 200 and dry.json()["count"] == COUNT, dry.text
            began = time.monotonic()
            started = httpx.post(f"{web.url}/jobs/bulk", json={"filter": flt, "action": "retry"}, timeout=30)
            assert started.status_code == 202, started.text
            bulk_id = started.json()["bulkId"]
            where = f"{web.url}{started.headers['Location']}"
            assert httpx.get(where, timeout=5).json()["total"] == COUNT
            # Killed once half is done and while a batch is in flight: its intents written, some of its jobs reopened
            # (perhaps published too), nothing of it committed. Redis itself is watched, to catch that moment.
            deadline = time.monotonic() + 60
            while True:
                cursor, state = redis_client.hmget(keys.bulk(bulk_id), ["done", "state"])
                assert state == "running", state  # it must not finish before the kill
                if int(str(cursor)) >= COUNT // 2 and reopened_in_flight(bulk_id):
                    break
                assert time.monotonic() < deadline, cursor
                time.sleep(0.002)
            assert web.proc is not None
            os.killpg(web.proc.pid, signal.SIGKILL)
            first_s = time.monotonic() - began
            web.proc.wait(10)
        finally:
            web.stop()
        at_kill = services().bulk.progress(bulk_id)
        # The situation the test guards: killed halfway, the run neither done nor given up, a batch begun.
        assert at_kill.state is BulkState.RUNNING and COUNT // 2 <= at_kill.done < COUNT, at_kill
        in_flight = redis_client.hgetall(keys.bulk_intents(bulk_id))
        reopened = reopened_in_flight(bulk_id)
        assert reopened, in_flight
        print(
            f"killed at {at_kill.done} of {COUNT} done; a batch of {len(in_flight)} in flight, "
            f"{len(reopened)} of its jobs reopened ({', '.join(sorted(set(reopened))) or 'none'})"
        )

        restarted = time.monotonic()
        with WebProcess(app=APP, env=KEEP) as second:
            final = poll(f"{second.url}/jobs/bulk/{bulk_id}", "done", timeout_s=90)
        print(
            f"first process: {at_kill.done} in {first_s:.1f} s (snapshot included); second: started, took the run "
            f"over and did the other {COUNT - at_kill.done} in {time.monotonic() - restarted:.1f} s"
        )
        assert (final["total"], final["done"], final["acted"], final["skipped"]) == (COUNT, COUNT, COUNT, 0), final

        deadline = time.monotonic() + 120
        while store.count("bulk_target", JobState.COMPLETED) < COUNT:
            assert time.monotonic() < deadline, store.count("bulk_target", JobState.COMPLETED)
            time.sleep(0.5)
    runs = redis_client.hgetall(RUNS)
    assert set(runs) == set(ids)  # none lost
    doubled = {job_id: n for job_id, n in runs.items() if n != "1"}
    assert doubled == {}  # none run twice
    assert store.count("bulk_target", JobState.FAILED) == 0
