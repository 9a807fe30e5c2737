"""Redis stopped for 10 s mid-flow: no job lost, records catch up within seconds, /readyz names Redis."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from service.ops.jobs import Jobs
from tests.reliability.api_client import api_using
from tests.reliability.harness import (
    REPORTS,
    FaultReport,
    Fleet,
    Tally,
    jobs_through,
    proxies,
    scale,
    states_of,
    summarise,
    through,
    wait_for,
    wait_until_final,
    worker_env,
)
from tests.support.chaos_actors import tally, tally_client, tally_key

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

OUTAGE_S = 10.0


def test_a_ten_second_redis_outage_loses_no_job_and_records_catch_up(jobs: Jobs) -> None:
    run = uuid.uuid4().hex[:8]
    total = scale(400)
    report = FaultReport(
        f"Redis down {OUTAGE_S:.0f} s mid-flow (2 workers x 4 threads, API)",
        "none lost or twice; records catch up; /readyz and POST say 503 redis",
    )
    with proxies(6379) as (redis_proxy,), Fleet(2, threads=4, env=worker_env(redis=redis_proxy)):
        api_jobs = jobs_through(os.environ["RABBITMQ_URL"], through(os.environ["REDIS_URL"], redis_proxy))
        with api_using(api_jobs) as api:
            ids = [tally.send(run=run, ms=50).message_id for _ in range(total)]
            report.sent = total
            assert wait_for(lambda: tally_client.llen(tally_key(run, "done")) >= total // 4, timeout=60) is not None

            redis_proxy.down()
            went_down = time.monotonic()
            down_wall = time.time()
            ready = api.get("/readyz")
            refused = api.post("/jobs/tally", json={"run": run, "ms": 0})
            done_at_cut = tally_client.llen(tally_key(run, "done"))
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - went_down)))
            ran_during = tally_client.llen(tally_key(run, "done")) - done_at_cut
            redis_proxy.up()
            came_back = time.monotonic()

            def caught_up() -> bool:
                # Every job that has finished running has a final record (the rest are still waiting their turn).
                finished = {e.split()[0] for e in tally_client.lrange(tally_key(run, "done"), 0, -1)}
                states = states_of(jobs.store, list(finished))
                return all(s == "completed" for s in states.values())

            catch_up = wait_for(caught_up, timeout=30, poll=0.2)
            states, _ = wait_until_final(jobs.store, ids, timeout=60 + total / 10)
            ready_again = api.get("/readyz")
    counts = summarise(states)
    tallied = Tally.read(run)
    report.completed = counts["completed"]
    report.lost = total - counts["completed"]
    twice = tallied.ran_twice({})  # no process is killed here: any second execution of a job is one too many
    report.run_twice = len({later.job_id for _, later in twice})
    hit = tallied.in_flight(down_wall)
    report.notes.append(f"{len(hit)} jobs running when Redis went away")
    report.recovery_s = catch_up
    report.notes.append(f"{ran_during} jobs ran while Redis was down; readyz {ready.status_code} {ready.json()}")
    REPORTS.append(report)

    assert ready.status_code == 503 and ready.json()["down"] == ["redis"], ready.text
    assert refused.status_code == 503 and "redis" in refused.json()["detail"], refused.text
    assert catch_up is not None and catch_up <= 10, f"records caught up after {catch_up} s"
    assert counts == {"completed": total}, counts
    assert hit, "no job was running when Redis went away: the outage exercised nothing"
    assert twice == [], twice[:5]
    assert ready_again.status_code == 200, ready_again.text
    assert came_back - went_down >= OUTAGE_S
