"""cleanup_jobs: retention, stale index entries, and requeueing jobs whose worker died. Safe to run twice at once."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from service.bootstrap import settings, store
from service.kits import maintenance
from service.worker.typed_actor import job

TIME_LIMIT_MS = 600_000


class CleanupPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budget_s: float = Field(300, gt=0, le=TIME_LIMIT_MS / 1000 - 60, description="stop starting new work after this")


class CleanupResult(BaseModel):
    ran: bool
    pruned: int
    staleIndexEntries: int
    requeued: list[str]
    note: str


@job(
    CleanupPayload,
    queue="maintenance",
    priority="low",
    max_retries=1,
    retry_delays=[60_000],
    time_limit=TIME_LIMIT_MS,
    periodic="0 * * * *",  # hourly; SCHEDULE_CLEANUP_JOBS overrides it
)
def cleanup_jobs(payload: CleanupPayload) -> CleanupResult:
    """Runs hourly by cron; sending it by hand is harmless."""
    outcome = maintenance.clean(
        store, lease_ms=settings.job_lease_ms, budget_s=payload.budget_s, lock_ttl_ms=TIME_LIMIT_MS
    )
    return CleanupResult(**outcome.as_dict())
