"""generate_report: job activity over a time window, per actor, as CSV or JSON in REPORTS_DIR; emailed if asked."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

from dramatiq.middleware import CurrentMessage
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from actors.email import send_email
from service.bootstrap import store
from service.domain.clock import now_ms
from service.domain.context import current_job
from service.domain.reports import report_path
from service.kits import reports
from service.settings import ReportSettings, load_settings
from service.worker.progress import report_progress
from service.worker.schedules import Periodic
from service.worker.typed_actor import job

logger = logging.getLogger(__name__)

settings = load_settings(ReportSettings)
#: Namespace of the emails' message ids: one report job always makes the same email job, so a redelivered
#: report cannot send its email twice.
_EMAIL_IDS = uuid.UUID("5a1d3c2e-8f4b-4b7a-9c1e-2d6f0a9b8c7d")
#: Reports this small travel inside the email; larger ones as a link only.
INLINE_BYTES = 64_000


class ReportPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hours: float = Field(24, gt=0, le=24 * 90, description="window length, ending at `until`")
    since: AwareDatetime | None = Field(None, description="window start; overrides `hours`")
    until: AwareDatetime | None = Field(None, description="window end; default: when the job was sent")
    format: Literal["csv", "json"] = "csv"

    @model_validator(mode="after")
    def _ordered(self) -> ReportPayload:
        if self.since and self.until and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class ReportResult(BaseModel):
    name: str
    rows: int
    bytes: int
    since: str
    until: str


def _sent_at_ms() -> int:
    message = CurrentMessage.get_current_message()
    return int(message.message_timestamp) if message is not None else now_ms()


def _email_after(result: reports.Written, fmt: str) -> None:
    """Chain send_email after this job, as a Dramatiq pipeline step: it runs only once the report is written."""
    message = CurrentMessage.get_current_message()
    if message is None or not settings.report_recipients:
        return
    if message.options.get("pipe_target"):
        logger.warning("report job already has a next pipeline step; not adding the email")
        return
    link = f"{settings.public_base_url}/reports/{result.name}"
    text = f"Job activity from {result.since} to {result.until}: {result.rows} actors.\n\nDownload: {link}\n"
    path = report_path(settings.reports_dir, result.name)
    if result.bytes <= INLINE_BYTES:
        text += f"\n{path.read_text()}"
    email = send_email.message_with_options(
        kwargs={
            "to": list(settings.report_recipients),
            "subject": f"Job activity report {result.until[:10]} ({fmt.upper()})",
            "text": text,
        },
        pipe_ignore=True,
    ).copy(message_id=str(uuid.uuid5(_EMAIL_IDS, message.message_id)))
    message.options["pipe_target"] = email.asdict()


@job(
    ReportPayload,
    queue="reports",
    priority="low",
    max_retries=2,
    retry_delays=[30_000, 120_000],
    time_limit=600_000,
    concurrency_limit=2,
    periodic=Periodic("0 0 * * *", payload=lambda tick: {"until": tick.isoformat(), "hours": 24}),
)
def generate_report(payload: ReportPayload) -> ReportResult:
    """Counts by state, mean and p95 duration and the top failure reasons per actor, for jobs created in the window."""
    until = (payload.until or datetime.fromtimestamp(_sent_at_ms() / 1000, tz=UTC)).astimezone(UTC)
    since = (payload.since or until - timedelta(hours=payload.hours)).astimezone(UTC)
    context = current_job.get()
    job_id = context.job_id if context else uuid.uuid4().hex
    # Named after the job, so a redelivered job rewrites its own file instead of leaving a second one.
    name = f"activity-{until:%Y%m%dT%H%M%SZ}-{job_id}.{payload.format}"
    written = reports.generate(
        store,
        settings.reports_dir,
        name,
        payload.format,
        int(since.timestamp() * 1000),
        int(until.timestamp() * 1000),
        report_progress,
    )
    _email_after(written, payload.format)
    return ReportResult(**written.as_dict())
