"""RabbitMQ cut while jobs flow through two workers and the API enqueues: all accepted jobs complete, once."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter

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
    summarise,
    through,
    wait_for,
    wait_until_final,
    worker_env,
)
from tests.support.chaos_actors import tally_client, tally_key

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

AWAY_S = 8.0


def test_a_broker_cut_loses_no_accepted_job_and_runs_none_twice(jobs: Jobs) -> None:
    run = uuid.uuid4().hex[:8]
    total = scale(400)
    report = FaultReport(
        f"RabbitMQ cut and away {AWAY_S:.0f} s (2 workers x 4 threads, API enqueuing)",
        "every 202 completes once; API 503 never 500; reconnect",
    )
    with proxies(5672) as (rabbit,), Fleet(2, threads=4, env=worker_env(rabbit=rabbit)):
        api_jobs = jobs_through(through(os.environ["RABBITMQ_URL"], rabbit), os.environ["REDIS_URL"])
        accepted: list[str] = []
        answers: Counter[int] = Counter()
        slowest = [0.0]
        with api_using(api_jobs) as api:
            broker_back = threading.Event()

            def enqueue() -> None:
                # Keeps sending through the outage, and until `total` requests were made and the broker is back.
                i = 0
                while i < total or not broker_back.is_set():
                    i += 1
                    # A few long jobs, so that some are still running when the connection drops.
                    ms = 3000 if i % 50 == 0 else 50
                    asked = time.monotonic()
                    response = api.post("/jobs/tally", json={"run": run, "ms": ms})
                    slowest[0] = max(slowest[0], time.monotonic() - asked)
                    answers[response.status_code] += 1
                    if response.status_code == 202:
                        accepted.append(response.json()["jobId"])
                    elif response.status_code == 503:
                        time.sleep(0.2)

            sender = threading.Thread(target=enqueue)
            sender.start()
            assert wait_for(lambda: tally_client.llen(tally_key(run, "done")) >= total // 5, timeout=60) is not None
            assert sender.is_alive()
            rabbit.down()
            cut_at = time.monotonic()
            cut_wall = time.time()
            time.sleep(AWAY_S)
            rabbit.up()
            back_at = time.monotonic()
            broker_back.set()
            done_then = tally_client.llen(tally_key(run, "done"))
            resumed = wait_for(lambda: tally_client.llen(tally_key(run, "done")) > done_then + 10, timeout=60)
            sender.join(120)
            states, _ = wait_until_final(jobs.store, accepted, timeout=60 + total / 10)
    counts = summarise(states)
    tallied = Tally.read(run)
    report.sent = len(accepted)
    report.completed = counts["completed"]
    report.lost = len(accepted) - counts["completed"]
    twice = tallied.ran_twice({})  # no process is killed here: any second execution of a job is one too many
    hit = tallied.in_flight(cut_wall)
    report.run_twice = len({later.job_id for _, later in twice})
    report.notes.append(f"{len(hit)} jobs running when the connections were cut")
    report.recovery_s = resumed
    report.notes.append(
        f"API answers {dict(answers)}, slowest {slowest[0]:.1f} s; broker away {back_at - cut_at:.1f} s"
    )
    REPORTS.append(report)

    assert set(answers) == {202, 503}, answers  # refused while away (never a 500), accepted again after
    assert slowest[0] < 12, f"a request waited {slowest[0]:.1f} s"
    assert counts == {"completed": len(accepted)}, counts
    assert hit, "no job was running when the broker went away: the cut exercised nothing"
    assert twice == [], twice[:5]
    assert resumed is not None and resumed < 15
