"""A job's attempts over time, read from its history."""

from __future__ import annotations

from datetime import UTC, datetime

from service.domain.records import HistoryEntry
from service.web.dashboard.attempts import attempts, timeline


def entry(state: str, second: int, **extra: object) -> HistoryEntry:
    return HistoryEntry.model_validate({"state": state, "at": f"2025-01-01T00:00:{second:02d}.000Z", **extra})


def test_each_active_entry_starts_an_attempt_and_the_next_entry_says_how_it_ended() -> None:
    history = [
        entry("queued", 0),
        entry("active", 1, attempt=1),
        entry("delayed", 3, retry=1, error="RuntimeError: first"),
        entry("active", 4, retry=1, attempt=2),
        entry("failed", 10, retry=1, error="RuntimeError: second"),
        entry("queued", 20, run=1, note="retried from failed"),
        entry("active", 21, run=1, attempt=3),
        entry("completed", 22, run=1),
    ]
    found = attempts(history)
    assert [(a.number, a.run, a.outcome, a.error, a.seconds) for a in found] == [
        (1, 0, "failed, retry scheduled", "RuntimeError: first", 2.0),
        (2, 0, "failed", "RuntimeError: second", 6.0),
        (3, 1, "completed", None, 1.0),
    ]


def test_an_attempt_without_an_end_is_running_and_a_redelivery_ends_the_one_before() -> None:
    found = attempts([entry("queued", 0), entry("active", 1), entry("active", 5)])
    assert [a.outcome for a in found] == ["lost (redelivered)", "running"]
    assert found[1].ended_at is None and found[1].seconds is None


def test_the_timeline_places_attempts_between_creation_and_the_last_event() -> None:
    found = attempts([entry("queued", 0), entry("active", 5), entry("completed", 10)])
    (span,) = timeline("2025-01-01T00:00:00.000Z", found, datetime(2025, 1, 1, tzinfo=UTC))
    assert (span.start, span.length) == (0.5, 0.5)


def test_a_job_that_never_started_has_no_attempts() -> None:
    assert attempts([entry("queued", 0), entry("cancelled", 2)]) == []
    assert timeline("2025-01-01T00:00:00.000Z", [], datetime.now(UTC)) == []
