"""Cron expressions in a time zone: which ticks exist, including across daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pendulum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from periodiq import CronSpec

from service.domain.cron import CronError, ZonedCron

PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"


def local_ticks(cron: ZonedCron, start: datetime, end: datetime) -> list[tuple[str, list[str]]]:
    """Each tick between two instants as (local instant, wall-clock ticks at it)."""
    return [
        (instant.astimezone(cron.zone).isoformat(), [f"{w:%H:%M}" for w in walls])
        for instant, walls in cron.ticks_between(start, end)
    ]


def test_a_daily_tick_inside_the_skipped_spring_hour_runs_once_just_after_the_jump() -> None:
    cron = ZonedCron("30 2 * * *", PARIS)
    ticks = local_ticks(cron, datetime(2025, 3, 29, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))
    assert ticks == [
        ("2025-03-29T02:30:00+01:00", ["02:30"]),
        ("2025-03-30T03:30:00+02:00", ["02:30"]),  # 02:30 does not exist that night
        ("2025-03-31T02:30:00+02:00", ["02:30"]),
    ]


def test_a_daily_tick_in_the_repeated_autumn_hour_runs_once() -> None:
    cron = ZonedCron("30 2 * * *", PARIS)
    ticks = local_ticks(cron, datetime(2025, 10, 25, tzinfo=UTC), datetime(2025, 10, 28, tzinfo=UTC))
    assert ticks == [
        ("2025-10-25T02:30:00+02:00", ["02:30"]),
        ("2025-10-26T02:30:00+02:00", ["02:30"]),  # not again at 02:30+01:00, an hour later
        ("2025-10-27T02:30:00+01:00", ["02:30"]),
    ]


def test_an_hourly_schedule_in_new_york_runs_each_wall_clock_hour_once_across_both_changes() -> None:
    cron = ZonedCron("0 * * * *", NEW_YORK)
    spring = local_ticks(cron, datetime(2025, 3, 9, 5, 30, tzinfo=UTC), datetime(2025, 3, 9, 8, 30, tzinfo=UTC))
    # 02:00 does not exist: it runs with 03:00, so no wall-clock hour is dropped.
    assert spring == [
        ("2025-03-09T01:00:00-05:00", ["01:00"]),
        ("2025-03-09T03:00:00-04:00", ["02:00", "03:00"]),
        ("2025-03-09T04:00:00-04:00", ["04:00"]),
    ]
    autumn = local_ticks(cron, datetime(2025, 11, 2, 4, 30, tzinfo=UTC), datetime(2025, 11, 2, 8, 30, tzinfo=UTC))
    # 01:00 happens twice: it runs the first time only.
    assert autumn == [
        ("2025-11-02T01:00:00-04:00", ["01:00"]),
        ("2025-11-02T02:00:00-05:00", ["02:00"]),
        ("2025-11-02T03:00:00-05:00", ["03:00"]),
    ]


def test_every_tick_of_the_skipped_hour_runs_in_order_after_the_jump() -> None:
    cron = ZonedCron("*/20 2 * * *", PARIS)
    ticks = local_ticks(cron, datetime(2025, 3, 30, 0, 0, tzinfo=UTC), datetime(2025, 3, 30, 4, 0, tzinfo=UTC))
    assert ticks == [
        ("2025-03-30T03:00:00+02:00", ["02:00"]),
        ("2025-03-30T03:20:00+02:00", ["02:20"]),
        ("2025-03-30T03:40:00+02:00", ["02:40"]),
    ]


def test_the_scheduler_calls_see_the_same_ticks_as_the_listing() -> None:
    """periodiq's Scheduler asks validate(now) and next_valid_date(now); both agree with ticks_between."""
    cron = ZonedCron("30 2 * * *", PARIS)
    now = pendulum.datetime(2025, 3, 30, 0, 0, tz=PARIS)
    wake = cron.next_valid_date(now)
    assert wake == pendulum.datetime(2025, 3, 30, 3, 30, tz=PARIS)
    assert cron.validate(wake + timedelta(seconds=0.5))
    assert not cron.validate(wake - timedelta(minutes=1))
    autumn_second = pendulum.datetime(2025, 10, 26, 1, 30, tz="UTC")  # 02:30 the second time
    assert not cron.validate(autumn_second)


def test_a_tick_periodiq_would_skip_is_found() -> None:
    """periodiq's own stepping goes from 01:00 to 02:20 for "*/20 2 * * *", missing 02:00."""
    start = pendulum.datetime(2025, 1, 1, 1, 0, tz="UTC")
    assert CronSpec.parse("*/20 2 * * *").next_valid_date(start) == pendulum.datetime(2025, 1, 1, 2, 20, tz="UTC")
    assert ZonedCron("*/20 2 * * *").next_valid_date(start) == pendulum.datetime(2025, 1, 1, 2, 0, tz="UTC")


def test_sunday_is_both_0_and_7_and_named_days_work() -> None:
    for expression in ("0 0 * * 0", "0 0 * * 7", "0 0 * * sun", "@weekly"):
        cron = ZonedCron(expression)
        ticks = [i for i, _ in cron.ticks_between(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 20, tzinfo=UTC))]
        assert [t.day for t in ticks] == [5, 12, 19], expression  # the Sundays


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "minute: 61 is out of range 0-59"),
        ("* 24 * * *", "hour: 24 is out of range 0-23"),
        ("* * *", "expected 5 fields"),
        ("* * * * * *", "expected 5 fields"),
        ("every minute", "expected 5 fields"),
        ("x * * * *", "minute: 'x' is not a number"),
        ("5-1 * * * *", "minute: range 5-1 runs backwards"),
        ("*/0 * * * *", "minute: a step must be at least 1"),
        ("* * * 13 *", "month: 13 is out of range 1-12"),
        ("* * * * mond", "day of week: 'mond' is not a number"),
        ("0 0 31 2 *", "it matches no date"),
        ("@fortnightly", "is not one of @yearly"),
        ("1,,2 * * * *", "minute: '' is not a value"),
    ],
)
def test_a_malformed_expression_is_refused_naming_the_field(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message.replace("*", r"\*")):
        ZonedCron(expression)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(CronError, match="unknown time zone 'Mars/Olympus'"):
        ZonedCron("* * * * *", "Mars/Olympus")


EXPRESSIONS = ["* * * * *", "*/7 * * * *", "30 2 * * *", "0 * * * *", "15 1-3 * * *", "0,30 2 * * 0", "5 3 25-31 * *"]
# Hours around the 2025 changes in each zone, so every sampled window crosses or touches one.
CHANGES = {
    PARIS: [datetime(2025, 3, 30, 1, tzinfo=UTC), datetime(2025, 10, 26, 1, tzinfo=UTC)],
    NEW_YORK: [datetime(2025, 3, 9, 7, tzinfo=UTC), datetime(2025, 11, 2, 6, tzinfo=UTC)],
    "Australia/Lord_Howe": [datetime(2025, 4, 5, 15, tzinfo=UTC), datetime(2025, 10, 4, 16, tzinfo=UTC)],
}


@settings(max_examples=60, deadline=None)
@given(
    expression=st.sampled_from(EXPRESSIONS),
    zone=st.sampled_from(sorted(CHANGES)),
    which=st.integers(0, 1),
    offset_min=st.integers(-6 * 60, 6 * 60),
)
def test_every_matching_wall_clock_minute_is_exactly_one_tick_around_a_change(
    expression: str, zone: str, which: int, offset_min: int
) -> None:
    """Compared with brute force: every wall-clock minute that matches appears once, at its instant, in order."""
    cron = ZonedCron(expression, zone)
    start = CHANGES[zone][which] + timedelta(minutes=offset_min) - timedelta(hours=4)
    end = start + timedelta(hours=8)
    found = [(instant, wall) for instant, walls in cron.ticks_between(start, end) for wall in walls]
    instants = [i for i, _ in found]
    assert instants == sorted(instants)
    assert all(cron.instant_of(wall) == instant for instant, wall in found)
    walls = [w for _, w in found]
    assert len(walls) == len(set(walls))
    # Brute force: every wall-clock minute of a wide range, kept if it matches and its instant is in range.
    expected = []
    minute = (start - timedelta(hours=16)).replace(tzinfo=None, second=0, microsecond=0)
    while minute < (end + timedelta(hours=16)).replace(tzinfo=None):
        if cron.matches(minute) and start < cron.instant_of(minute) <= end:
            expected.append(minute)
        minute += timedelta(minutes=1)
    assert sorted(walls) == expected
