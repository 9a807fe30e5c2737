"""`jobs schedules`: the same list as GET /schedules, as a table or as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import periodiq
import pytest

from service.worker import ticks
from tests.support import periodic_actors
from tests.support.cli import run_cli, run_jobs


def test_schedules_are_listed_with_cron_next_run_last_run_and_job_id(capsys: pytest.CaptureFixture[str]) -> None:
    actor = periodic_actors.tick_yearly
    periodiq.Scheduler(actors=[actor]).send_actors([actor], now=datetime(2030, 1, 1, tzinfo=UTC))
    job_id = ticks.tick_job_id("tick_yearly", "2030-01-01T00:00 UTC")

    as_json = run_cli(capsys, "schedules", "--json")
    assert as_json.code == 0, as_json.err
    listed = {item["actor"]: item for item in json.loads(as_json.out)}
    assert listed["tick_yearly"]["cron"] == "0 0 1 1 *"
    assert listed["tick_yearly"]["lastRunAt"] == "2030-01-01T00:00:00Z"
    assert listed["tick_yearly"]["lastJobId"] == job_id
    assert listed["tick_off"]["cron"] == "off" and listed["tick_off"]["nextRunAt"] is None

    table = run_cli(capsys, "schedules")
    assert table.code == 0, table.err
    [row] = [line for line in table.out.splitlines() if "tick_yearly" in line]
    assert "0 0 1 1 *" in row and "01-01 00:00" in row and job_id[:8] in row
    [off] = [line for line in table.out.splitlines() if "tick_off" in line]
    assert " off " in off


def test_the_jobs_executable_lists_the_production_schedules_and_their_overrides() -> None:
    listed = run_jobs("schedules", "--json", env={"SCHEDULE_GENERATE_REPORT": "off"})
    assert listed.code == 0, listed.err
    by_actor = {item["actor"]: item for item in json.loads(listed.out)}
    assert by_actor["cleanup_jobs"]["cron"] == "0 * * * *"
    assert by_actor["cleanup_jobs"]["nextRunAt"].endswith(":00:00Z")
    assert by_actor["generate_report"]["cron"] == "off"
    assert by_actor["generate_report"]["nextRunAt"] is None


def test_a_malformed_schedule_variable_makes_the_jobs_executable_exit_with_one_line() -> None:
    refused = run_jobs("schedules", env={"SCHEDULE_CLEANUP_JOBS": "0 0 30 2 *"})
    assert refused.code == 2
    assert refused.err.strip().splitlines() == [
        "invalid configuration: SCHEDULE_CLEANUP_JOBS: '0 0 30 2 *' is not a valid cron expression: it matches no date"
    ]
