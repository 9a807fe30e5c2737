"""generate_report: the numbers it computes from the job store, the file it writes, its download and its email."""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from actors.reports import _EMAIL_IDS, generate_report
from service.domain.clock import iso_from_ms
from service.domain.reports import BadReportName, report_path
from service.domain.states import JobState
from service.kits import reports
from service.ops.jobs import Jobs
from service.settings import ReportSettings, forget_settings
from service.web import app
from service.worker.schedules import schedule_of
from tests.actors.conftest import PrivateLane
from tests.support.seed import seed
from tests.support.smtp import SmtpServer
from tests.support.workers import WorkerProcess

T0 = 1_780_000_000_000  # a fixed instant, so the window is exact


@pytest.fixture
def seeded(jobs: Jobs) -> tuple[int, int]:
    store = jobs.store
    for took in (100, 200, 300, 400, 1000):
        seed(store, "alpha", created=T0 + 1000, state="completed", took_ms=took)
    seed(store, "alpha", created=T0 + 2000, state="failed", took_ms=50, reason="ValueError: bad\ntraceback line")
    seed(store, "alpha", created=T0 + 2000, state="failed", took_ms=50, reason="ValueError: bad")
    seed(store, "alpha", created=T0 + 2000, state="failed", took_ms=50, reason="KeyError: 'x'")
    seed(store, "alpha", created=T0 + 3000, state="queued")
    seed(store, "beta", created=T0 + 3000, state="active")
    seed(store, "beta", created=T0 + 3000, state="delayed")
    seed(store, "alpha", created=T0 - 1, state="completed", took_ms=99_999)  # before the window
    seed(store, "alpha", created=T0 + 10_000, state="completed", took_ms=99_999)  # at its end: excluded
    seed(store, "gamma", created=T0 - 5000, state="completed", took_ms=5)  # an actor with nothing in the window
    return T0, T0 + 10_000


def test_the_report_counts_states_and_computes_mean_p95_and_top_reasons_per_actor(
    jobs: Jobs, seeded: tuple[int, int], tmp_path: Path
) -> None:
    since, until = seeded
    seen: list[float] = []
    written = reports.generate(jobs.store, tmp_path, "r.csv", "csv", since, until, lambda p, m: seen.append(p))
    assert (written.rows, written.name) == (2, "r.csv")
    data = (tmp_path / "r.csv").read_bytes()
    assert written.bytes == len(data)
    rows = {row["actor"]: row for row in csv.DictReader(io.StringIO(data.decode()))}
    assert set(rows) == {"alpha", "beta"}
    alpha = rows["alpha"]
    assert (alpha["total"], alpha["completed"], alpha["failed"], alpha["queued"]) == ("9", "5", "3", "1")
    # durations 100, 200, 300, 400, 1000 and three failures of 50 ms
    assert alpha["mean_duration_ms"] == str(round((100 + 200 + 300 + 400 + 1000 + 150) / 8))
    assert alpha["p95_duration_ms"] == "1000"
    assert alpha["top_failure_reasons"] == "ValueError: bad (2); KeyError: 'x' (1)"
    beta = rows["beta"]
    assert (beta["total"], beta["active"], beta["delayed"], beta["mean_duration_ms"]) == ("2", "1", "1", "")
    assert seen == sorted(seen) and seen[-1] == 95
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]  # no temp file left behind


def test_the_report_can_be_json(jobs: Jobs, seeded: tuple[int, int], tmp_path: Path) -> None:
    since, until = seeded
    reports.generate(jobs.store, tmp_path, "r.json", "json", since, until, lambda p, m: None)
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["since"] == iso_from_ms(since)
    alpha = next(a for a in document["actors"] if a["actor"] == "alpha")
    assert alpha["top_failure_reasons"][0] == {"reason": "ValueError: bad", "count": 2}
    assert alpha["p95_duration_ms"] == 1000


@pytest.mark.parametrize("name", ["../secret.csv", "a/b.csv", ".hidden", "..", "x\\y.csv", "/etc/passwd", ""])
def test_a_report_name_with_a_path_in_it_is_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(BadReportName):
        report_path(tmp_path, name)


# -- through a worker and the API -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_worker(lane: PrivateLane, job_env: dict[str, str]) -> Iterator[WorkerProcess]:
    with lane.worker({**job_env, "REPORT_RECIPIENTS": "boss@example.com, ops@example.com"}) as process:
        yield process


@pytest.fixture
def api(reports_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("REPORTS_DIR", str(reports_dir))
    forget_settings(ReportSettings)
    with TestClient(app) as client:
        yield client
    forget_settings(ReportSettings)


def test_a_report_job_writes_its_file_reports_progress_and_emails_it_through_a_pipeline(
    jobs: Jobs,
    lane: PrivateLane,
    report_worker: WorkerProcess,
    smtp_server: SmtpServer,
    reports_dir: Path,
    api: TestClient,
) -> None:
    for took in (10, 20):
        seed(jobs.store, "alpha", created=T0 + 1000, state="completed", took_ms=took)
    job_id = lane.send(generate_report, since="2026-05-28T00:00:00Z", until="2026-05-29T00:00:00Z")
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.COMPLETED, record.failedReason
    assert record.progress == 100
    assert any(h.state is JobState.ACTIVE for h in record.history)
    result = record.result
    assert result["name"] == f"activity-20260529T000000Z-{job_id}.csv"
    assert result["rows"] == 1
    path = reports_dir / result["name"]
    assert path.stat().st_size == result["bytes"]
    assert not [p for p in os.listdir(reports_dir) if p.startswith(".partial-")]

    download = api.get(f"/reports/{result['name']}")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert download.content == path.read_bytes()
    assert download.text.splitlines()[1].startswith("alpha,2,0,0,0,2,0,0,15,20,")

    email_job = str(uuid.uuid5(_EMAIL_IDS, job_id))
    email = jobs.wait(email_job, timeout_s=20)
    assert email.state is JobState.COMPLETED, email.failedReason
    received = smtp_server.handler.wait_for(f"<{email_job}@example.org>")
    assert received.rcpt_tos == ["boss@example.com", "ops@example.com"]
    body = received.message.get_body(("plain",))
    assert body is not None
    assert f"/reports/{result['name']}" in body.get_content()
    assert "alpha,2,0,0,0,2,0,0,15,20," in body.get_content()


def test_the_download_route_refuses_paths_and_says_404_for_a_missing_report(api: TestClient) -> None:
    assert api.get("/reports/no-such-report.csv").status_code == 404
    for name in ("..%2Fsecret.csv", "a/b.csv", ".hidden"):
        answer = api.get(f"/reports/{name}")
        assert answer.status_code == 400, name
        assert "plain file name" in answer.json()["detail"]


def test_a_wrong_payload_from_a_foreign_client_fails_without_retries_naming_the_fields(
    jobs: Jobs, lane: PrivateLane, report_worker: WorkerProcess
) -> None:
    job_id = lane.send_raw("generate_report", "reports", {"format": "xml", "hours": -1})
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.FAILED
    assert record.attempts == 1
    reason = record.failedReason or ""
    assert "hours: Input should be greater than 0" in reason
    assert "format: Input should be 'csv' or 'json'" in reason


def test_the_daily_schedule_reports_on_the_24_hours_before_its_tick() -> None:
    schedule = schedule_of(generate_report)
    assert schedule is not None and schedule.payload is not None
    tick = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    payload = generate_report.validate(schedule.payload(tick))
    assert payload["until"].startswith("2026-03-02T00:00:00")
    assert payload["hours"] == 24
