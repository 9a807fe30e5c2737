"""What the API's GET /schedules and the CLI's `jobs schedules` show: each schedule, its next and last runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dramatiq

from service.domain.periodic import Schedule, schedule_of
from service.ops.unavailable import store_call
from service.store.schedule_store import ScheduleState, ScheduleStore


def _iso(instant: datetime | None) -> str | None:
    return instant.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if instant else None


@dataclass(frozen=True)
class ScheduleView:
    actor: str
    cron: str  #: the expression in effect, or "off"
    timezone: str
    next_run_at: str | None
    state: ScheduleState

    def as_json(self) -> dict[str, Any]:
        """The contract's keys (camelCase), then the extra ones."""
        return {
            "actor": self.actor,
            "cron": self.cron,
            "nextRunAt": self.next_run_at,
            "lastRunAt": self.state.last_run_at,
            "lastJobId": self.state.last_job_id,
            "timezone": self.timezone,
            "lastSkippedAt": self.state.last_skipped_at,
            "skippedTicks": self.state.skipped_ticks,
        }


class Schedules:
    """The service layer for schedules: GET /schedules and `jobs schedules` call list()."""

    def __init__(self, broker: dramatiq.Broker, store: ScheduleStore) -> None:
        self.broker = broker
        self.store = store

    def declared(self) -> list[Schedule]:
        found = (schedule_of(self.broker.get_actor(name)) for name in sorted(self.broker.get_declared_actors()))
        return [s for s in found if s is not None]

    def list(self, now: datetime | None = None) -> list[ScheduleView]:
        at = now or datetime.now(UTC)
        declared = self.declared()
        states = store_call(lambda: self.store.states([s.actor for s in declared]))
        return [
            ScheduleView(
                actor=s.actor,
                cron=s.expression,
                timezone=s.timezone,
                next_run_at=_iso(s.cron.next_after(at)) if s.cron else None,
                state=states[s.actor],
            )
            for s in declared
        ]
