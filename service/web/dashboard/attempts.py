"""A job's attempts over time, read from the history its record keeps (one entry per transition)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.domain.records import HistoryEntry
from service.domain.states import JobState

#: What the entry that follows an `active` one says about how that attempt ended.
OUTCOMES = {
    JobState.COMPLETED: "completed",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
    JobState.DELAYED: "failed, retry scheduled",
    JobState.QUEUED: "interrupted",
    JobState.ACTIVE: "lost (redelivered)",
}


@dataclass(frozen=True)
class Attempt:
    number: int
    run: int
    started_at: str
    ended_at: str | None
    outcome: str  #: "running" until another entry follows
    error: str | None
    seconds: float | None


@dataclass(frozen=True)
class Span:
    """An attempt placed on a 0..1 time axis that starts when the job was created."""

    attempt: Attempt
    start: float
    length: float


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def attempts(history: list[HistoryEntry]) -> list[Attempt]:
    found: list[Attempt] = []
    opened: HistoryEntry | None = None
    for entry in history:
        if opened is not None:
            seconds = (parse(entry.at) - parse(opened.at)).total_seconds()
            found.append(
                Attempt(
                    number=len(found) + 1,
                    run=opened.run,
                    started_at=opened.at,
                    ended_at=entry.at,
                    outcome=OUTCOMES[entry.state],
                    error=entry.error,
                    seconds=max(seconds, 0.0),
                )
            )
            opened = None
        if entry.state is JobState.ACTIVE:
            opened = entry
    if opened is not None:
        found.append(Attempt(len(found) + 1, opened.run, opened.at, None, "running", None, None))
    return found


def timeline(created_at: str, found: list[Attempt], now: datetime) -> list[Span]:
    """Where each attempt sits between the job's creation and its last event (or now, while one runs)."""
    if not found or not created_at:
        return []
    origin = parse(created_at)
    end = max((parse(a.ended_at) if a.ended_at else now) for a in found)
    total = max((end - origin).total_seconds(), 0.001)
    spans = []
    for a in found:
        start = (parse(a.started_at) - origin).total_seconds() / total
        finish = ((parse(a.ended_at) if a.ended_at else now) - origin).total_seconds() / total
        spans.append(Span(a, max(0.0, min(start, 1.0)), max(min(finish, 1.0) - max(start, 0.0), 0.004)))
    return spans
