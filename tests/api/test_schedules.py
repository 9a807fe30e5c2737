"""GET /schedules: every declared schedule with its expression, next run and last run, from any scheduler."""

from __future__ import annotations

from datetime import UTC, datetime

import periodiq
from fastapi.testclient import TestClient

from service.worker import ticks
from tests.support import periodic_actors


def test_schedules_list_each_actor_with_its_cron_next_run_and_last_run(client: TestClient) -> None:
    actor = periodic_actors.tick_yearly
    periodiq.Scheduler(actors=[actor]).send_actors([actor], now=datetime(2030, 1, 1, tzinfo=UTC))

    answer = client.get("/schedules")

    assert answer.status_code == 200
    listed = {item["actor"]: item for item in answer.json()}
    assert listed["tick_yearly"] == {
        "actor": "tick_yearly",
        "cron": "0 0 1 1 *",
        "nextRunAt": f"{datetime.now(UTC).year + 1}-01-01T00:00:00Z",
        "lastRunAt": "2030-01-01T00:00:00Z",
        "lastJobId": ticks.tick_job_id("tick_yearly", "2030-01-01T00:00 UTC"),
        "timezone": "UTC",
        "lastSkippedAt": None,
        "skippedTicks": 0,
    }
    assert listed["tick_off"]["cron"] == "off" and listed["tick_off"]["nextRunAt"] is None
    assert listed["tick_paris_night"]["timezone"] == "Europe/Paris"
    assert [item["actor"] for item in answer.json()] == sorted(listed)
