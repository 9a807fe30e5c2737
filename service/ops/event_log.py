"""The lifecycle-event log: the capped Redis stream `jobs:events` that every state change appends to.

The Lua script that changes a job's state adds its event in the same atomic step (lua/common.lua), so the stream
holds every change, in the order Redis applied them, and nothing that did not happen. Its entry id is the event's
id. The API's event streams, the dashboard, `jobs events`, the RabbitMQ export and other services (through consumer
groups of their own) all read it here; nothing else writes it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from service.domain.states import FINAL_STATES
from service.store import keys

#: How far back of a job's creation time a look for its events starts: the stream's ids come from Redis' clock, the
#: record's creation time from its sender's.
CLOCK_SKEW_MS = 60_000
#: Entries read per round trip when a job's events are looked for.
SCAN_CHUNK = 1000
FINAL = {s.value for s in FINAL_STATES}


@dataclass(frozen=True)
class Event:
    """One state change. Optional fields are None when the change had none (`attempt` is set on "active" only)."""

    event_id: str  #: the stream entry's id ("<ms>-<seq>"): increasing, unique
    job_id: str
    actor: str
    queue: str
    state: str
    at: str  #: ISO 8601, UTC, when the change was made
    run: int | None = None
    retry: int | None = None
    attempt: int | None = None
    error: str | None = None
    note: str | None = None

    @property
    def routing_key(self) -> str:
        return f"{self.actor}.{self.state}"

    def as_json(self) -> dict[str, Any]:
        """camelCase, as the API's records; absent fields are left out."""
        data: dict[str, Any] = {
            "eventId": self.event_id,
            "jobId": self.job_id,
            "actor": self.actor,
            "queue": self.queue,
            "state": self.state,
            "at": self.at,
        }
        for name in ("run", "retry", "attempt", "error", "note"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data


def _number(fields: dict[str, str], name: str) -> int | None:
    value = fields.get(name)
    return int(value) if value else None


def parse(entry_id: str, fields: dict[str, str] | None) -> Event | None:
    """An entry as Redis returns it; None for an entry that is no event (trimmed while pending: no fields)."""
    if not fields or "jobId" not in fields or "state" not in fields:
        return None
    return Event(
        event_id=str(entry_id),
        job_id=fields["jobId"],
        actor=fields.get("actor", ""),
        queue=fields.get("queue", "default"),
        state=fields["state"],
        at=fields.get("at", ""),
        run=_number(fields, "run"),
        retry=_number(fields, "retry"),
        attempt=_number(fields, "attempt"),
        error=fields.get("error"),
        note=fields.get("note"),
    )


def _seq(fields: dict[str, str] | None) -> int | None:
    value = (fields or {}).get("seq")
    return int(value) if value else None


def _before(entry_id: str, other: str) -> bool:
    """Stream ids compared as Redis does ("<ms>-<n>")."""
    a, _, b = entry_id.partition("-")
    c, _, d = other.partition("-")
    return (int(a), int(b or 0)) < (int(c), int(d or 0))


def parse_all(entries: Sequence[Any]) -> list[Event]:
    return [e for e in (parse(str(entry_id), fields) for entry_id, fields in entries or []) if e is not None]


@dataclass(frozen=True)
class GroupLag:
    """A consumer group reading the stream (another service, or the RabbitMQ export)."""

    name: str
    #: events added after the last one delivered to the group (counted with `seq` when Redis cannot tell); None when
    #: nothing can tell
    lag: int | None
    pending: int  #: delivered to a consumer of the group and not acknowledged yet


@dataclass(frozen=True)
class StreamFigures:
    length: int  #: events in the stream now
    added: int  #: events ever added
    groups: list[GroupLag]

    @property
    def trimmed(self) -> int:
        """Events removed by the cap: every one added that is no longer there (nothing else deletes entries)."""
        return max(0, self.added - self.length)


class EventLog:
    def __init__(self, client: redis.Redis, key: str = keys.EVENTS) -> None:
        self.client = client
        self.key = key

    def recent(self, count: int = 20) -> list[Event]:
        """The newest `count` events, oldest first."""
        newest: Any = self.client.xrevrange(self.key, count=count)
        return list(reversed(parse_all(newest)))

    def last_id(self) -> str:
        """The id of the newest event, or "0-0": reading after it gives only events added from now on."""
        newest: Any = self.client.xrevrange(self.key, count=1)
        return str(newest[0][0]) if newest else "0-0"

    def after(self, last_id: str, *, count: int = 500, block_ms: int | None = None) -> list[Event]:
        """Events added after `last_id`, oldest first; with `block_ms`, waits that long for one when none is there."""
        answer: Any = self.client.xread({self.key: last_id}, count=count, block=block_ms)
        return parse_all(answer[0][1]) if answer else []

    def of_job(self, job_id: str, created_ms: int, *, after_id: str | None = None) -> list[Event]:
        """A job's events, oldest first, read from its creation time on (or after `after_id`). The scan is bounded by
        the stream's cap; events already trimmed are not there (the record's history keeps the last 50 changes)."""
        start = f"({after_id}" if after_id else str(max(0, created_ms - CLOCK_SKEW_MS))
        found: list[Event] = []
        while True:
            chunk: Any = self.client.xrange(self.key, min=start, max="+", count=SCAN_CHUNK)
            found += [e for e in parse_all(chunk) if e.job_id == job_id]
            if len(chunk) < SCAN_CHUNK:
                return found
            start = f"({chunk[-1][0]}"

    def follow(
        self, after_id: str, *, job_id: str | None = None, timeout_s: float | None = None, block_ms: int = 1000
    ) -> Iterator[Event]:
        """Events added after `after_id` as they come (only `job_id`'s when given), until a job's final state, or
        `timeout_s`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            for event in self.after(after_id, block_ms=block_ms):
                after_id = event.event_id
                if job_id is None or event.job_id == job_id:
                    yield event
                    if job_id is not None and event.state in FINAL:
                        return

    def figures(self) -> StreamFigures:
        """Length, events ever added and every consumer group's lag, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self.key)
        pipe.xinfo_stream(self.key)
        pipe.xinfo_groups(self.key)
        exists, stream, groups = pipe.execute(raise_on_error=False)
        if not exists:
            return StreamFigures(0, 0, [])  # no event yet: XINFO answers "no such key"
        for answer in (stream, groups):
            if isinstance(answer, Exception):
                raise answer
        added = int(stream.get("entries-added", stream["length"]))
        unknown = [str(g["last-delivered-id"]) for g in groups if g.get("lag") is None]
        counted = self._count_after(unknown, stream) if unknown else {}
        lags = []
        for group in groups:
            lag = group.get("lag")
            lag = counted.get(str(group["last-delivered-id"])) if lag is None else int(lag)
            lags.append(GroupLag(str(group["name"]), lag, int(group["pending"])))
        return StreamFigures(int(stream["length"]), added, lags)

    def _count_after(self, last_ids: list[str], stream: dict[str, Any]) -> dict[str, int | None]:
        """Events after each of these ids, counted with the events' `seq` (Redis answers no lag for a group once the
        cap has trimmed the stream, i.e. on every busy deployment). A group whose last event was trimmed already is
        behind by at least every event still there."""
        first, last = stream.get("first-entry"), stream.get("last-entry")
        if not first or not last:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for last_id in last_ids:
            pipe.xrange(self.key, min=last_id, max=last_id, count=1)
        found = pipe.execute()
        newest, oldest = _seq(last[1]), _seq(first[1])
        counts: dict[str, int | None] = {}
        for last_id, entries in zip(last_ids, found, strict=True):
            seq = _seq(entries[0][1]) if entries else None
            if newest is None:
                counts[last_id] = None
            elif seq is not None:
                counts[last_id] = newest - seq
            elif oldest is not None and _before(last_id, str(first[0])):
                counts[last_id] = newest - oldest + 1
            else:
                counts[last_id] = None
        return counts
