"""Cron expressions in a time zone: strict parsing, and ticks that a daylight-saving change neither repeats nor drops.

A tick is a wall-clock minute in the schedule's zone that matches the expression. Each tick happens once:
- in autumn, a wall-clock time that occurs twice runs at its first occurrence only;
- in spring, a wall-clock time inside the skipped hour runs as if the clock had not jumped (02:30 runs at 03:30).

periodiq's CronSpec holds the fields and does the matching; this subclass finds the next matching minute itself
(periodiq's next_valid_date skips ticks: from 01:00, "*/20 2 * * *" gives 02:20, never 02:00) and maps wall-clock
ticks to instants and back. periodiq's Scheduler only calls validate(), next_valid_date() and str(), so it runs
these ticks unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pendulum
from periodiq import CronSpec

#: No DST change moves a clock by more than this, so ticks further away than this are never affected by one.
WINDOW = timedelta(hours=3)
#: Each step skips a month, a day, an hour or to a matching minute; an expression matching nothing stops here.
MAX_STEPS = 5000

NAMED = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
#: (name, lowest, highest, names for values from `lowest` on)
FIELDS: list[tuple[str, int, int, list[str]]] = [
    ("minute", 0, 59, []),
    ("hour", 0, 23, []),
    ("day of month", 1, 31, []),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, WEEKDAYS),
]
_ITEM = re.compile(r"^(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>[0-9]+))?$")


def _utc(instant: datetime) -> datetime:
    """A plain UTC datetime: pendulum's DateTime (which periodiq passes) does its own arithmetic on replace()."""
    return datetime.fromtimestamp(instant.timestamp(), UTC)


class CronError(ValueError):
    """The expression is not a cron expression; the message says which field is wrong and why."""


def _number(text: str, name: str, low: int, high: int, names: list[str]) -> int:
    if text in names:
        return low + names.index(text) if name == "month" else names.index(text)
    if not text.isdigit():
        raise CronError(f"{name}: {text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{name}: {value} is out of range {low}-{high}")
    return value


def _field(text: str, name: str, low: int, high: int, names: list[str]) -> list[int]:
    values: set[int] = set()
    for item in text.lower().split(","):
        match = _ITEM.match(item)
        if not match:
            raise CronError(f"{name}: {item!r} is not a value, range or step")
        step = int(match["step"]) if match["step"] is not None else 1
        if step < 1:
            raise CronError(f"{name}: a step must be at least 1")
        if match["range"] == "*":
            start, end = low, high
        else:
            first, _, last = match["range"].partition("-")
            start = _number(first, name, low, high, names)
            # "5/15" means "from 5 to the end, every 15", as in most crons.
            end = _number(last, name, low, high, names) if last else (high if match["step"] else start)
            if start > end:
                raise CronError(f"{name}: range {start}-{end} runs backwards")
        values.update(range(start, end + 1, step))
    return sorted(values)


def parse(expression: str) -> list[list[int]]:
    """The five fields of an expression as sorted value lists. Raises CronError naming the bad field."""
    text = expression.strip()
    text = NAMED.get(text.lower(), text)
    if text.startswith("@"):
        raise CronError(f"{text!r} is not one of {', '.join(NAMED)}")
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}")
    fields = [_field(part, *spec) for part, spec in zip(parts, FIELDS, strict=True)]
    dow = set(fields[4])
    if dow & {0, 7}:
        # Sunday is both 0 and 7: periodiq's stepping counts Sunday as 0 and its matching as 7.
        dow |= {0, 7}
    fields[4] = sorted(dow)
    return fields


class ZonedCron(CronSpec):  # type: ignore[misc]
    """periodiq's CronSpec, reading the expression in a time zone. Instants are timezone-aware datetimes."""

    def __init__(self, expression: str, zone: str = "UTC") -> None:
        self.expression = expression.strip()
        self.zone_name = zone
        try:
            self.zone = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CronError(f"unknown time zone {zone!r}; use an IANA name such as UTC or Europe/Paris") from None
        super().__init__(*parse(expression), parsed_from=self.expression)
        # An expression such as "0 0 31 2 *" parses but never fires: refuse it now, not at the first tick.
        try:
            self._next_wall(datetime(2000, 1, 1))
        except CronError:
            raise CronError("it matches no date") from None

    def __str__(self) -> str:
        return self.expression if self.zone_name == "UTC" else f"{self.expression} ({self.zone_name})"

    # -- wall clock ------------------------------------------------------------------------------------------

    def matches(self, wall: datetime) -> bool:
        """Whether a wall-clock minute (naive) matches the expression."""
        return bool(CronSpec.validate(self, wall))

    def _day_matches(self, wall: datetime) -> bool:
        dom = wall.day in self.dom
        dow = wall.isoweekday() % 7 in self.dow
        # As in every cron: when both day fields are restricted, either one matching is enough.
        if self.is_dom_restricted and self.is_dow_restricted:
            return dom or dow
        return dom and dow

    def _next_wall(self, wall: datetime) -> datetime:
        """The first matching wall-clock minute after `wall` (naive), on a clock without DST."""
        t = wall.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(MAX_STEPS):
            if t.month not in self.month:
                t = datetime(t.year + t.month // 12, t.month % 12 + 1, 1)
            elif not self._day_matches(t):
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)
            elif t.hour not in self.hour:
                t = datetime(t.year, t.month, t.day, t.hour) + timedelta(hours=1)
            elif t.minute not in self.minute:
                later = [m for m in self.minute if m > t.minute]
                t = t.replace(minute=later[0]) if later else t.replace(minute=0) + timedelta(hours=1)
            elif self.matches(t):
                return t
            else:
                t += timedelta(minutes=1)
        raise CronError(f"no matching minute found after {wall:%Y-%m-%d %H:%M}")

    def wall_of(self, instant: datetime) -> datetime:
        return _utc(instant).astimezone(self.zone).replace(tzinfo=None, second=0, microsecond=0)

    def instant_of(self, wall: datetime) -> datetime:
        """fold=0: a repeated time maps to its first occurrence, a skipped one to the same time before the jump."""
        return wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)

    # -- ticks -----------------------------------------------------------------------------------------------

    def ticks_at(self, instant: datetime) -> list[datetime]:
        """The wall-clock ticks (naive) that fall on this instant's minute: usually none or one; two when a
        skipped time in spring lands on a real one."""
        at = _utc(instant).replace(second=0, microsecond=0)
        offsets = {self._offset(at - timedelta(hours=h)) for h in range(4)}
        walls = {(at + offset).replace(tzinfo=None) for offset in offsets}
        return sorted(w for w in walls if self.matches(w) and self.instant_of(w) == at)

    def next_after(self, last: datetime) -> datetime:
        """The first tick strictly after `last`, as a UTC instant."""
        last = _utc(last)
        wall = self._next_wall(self.wall_of(last))
        instant = self.instant_of(wall)
        # Away from a DST change, wall-clock order is instant order and the first match is the answer. Near one:
        # `wall` may already have passed (autumn), may sit in the skipped hour (spring, it then runs after later
        # wall-clock times), or an earlier skipped time may still be due (just after the spring jump).
        in_gap = self.wall_of(instant) != wall
        if instant > last and not in_gap and self._offset(last - WINDOW) == self._offset(last):
            return instant
        return self._next_near_change(last)

    def _offset(self, instant: datetime) -> timedelta:
        return _utc(instant).astimezone(self.zone).utcoffset() or timedelta(0)

    def _next_near_change(self, last: datetime) -> datetime:
        # instant_of(w) lies between w - high and w - low (naive UTC): look at every wall-clock tick that can land
        # after `last`, and stop once none further on can land before the best one found.
        offsets = [self._offset(last + timedelta(hours=h)) for h in range(-3, 4)]
        low, high = min(offsets), max(offsets)
        wall = (last + low).replace(tzinfo=None, second=0, microsecond=0) - timedelta(minutes=1)
        best: datetime | None = None
        while True:
            wall = self._next_wall(wall)
            instant = self.instant_of(wall)
            if instant > last and (best is None or instant < best):
                best = instant
                high = max(high, self._offset(best + WINDOW))
            if best is not None and wall - high > best.replace(tzinfo=None):
                return best

    def ticks_between(self, after: datetime, until: datetime) -> Iterator[tuple[datetime, list[datetime]]]:
        """(instant, wall-clock ticks) for every tick with after < instant <= until, oldest first."""
        cursor = after
        while True:
            cursor = self.next_after(cursor)
            if cursor > until:
                return
            yield cursor, self.ticks_at(cursor)

    # -- what periodiq's Scheduler calls ---------------------------------------------------------------------

    def validate(self, date: datetime) -> bool:
        return bool(self.ticks_at(date))

    def next_valid_date(self, last: datetime) -> pendulum.DateTime:
        return pendulum.instance(self.next_after(last)).in_timezone(self.zone_name)
