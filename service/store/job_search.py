"""Finding jobs by a filter (service/domain/job_filter.py) in the store's indexes: walk the most selective index newest
first, within the creation window (the indexes are scored by creation ms), and read from the records only what the
index does not already say. A page examines at most a set number of jobs, so a search for rare text never holds
Redis or a web process for long: it may come back short, with a cursor to go on from."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from service.domain.job_filter import EXAMINED_PER_PAGE, JobFilter
from service.store import keys

#: At most this many jobs are examined for one page (service/domain/job_filter.py says why).
EXAMINE_PER_PAGE = EXAMINED_PER_PAGE
#: Jobs read from an index, and records read, per round trip.
WALK_BATCH = 500

#: Where a walk stands: (creation ms, job id) of the last job it went past.
Position = tuple[int, str]
#: Some fields of a job's record, as Redis gives them (None: no such field, or no record).
Row = dict[str, str | None]


@dataclass(frozen=True)
class Plan:
    """How a filter is searched: the index walked, and whether records must be read to finish the filtering."""

    index: str
    reads_records: bool


def plan(client: redis.Redis, flt: JobFilter) -> Plan:
    """The most selective index for the filter: the key's, or the actor's/state's (or both), whichever holds fewer
    jobs in the window (ZCOUNT, O(log n) each); records are read only for the parts the index does not imply."""
    by_kind = keys.index(flt.actor, flt.state.value if flt.state else None)
    if flt.key is None:
        return Plan(by_kind, reads_records=flt.reason is not None)
    by_key = keys.index_by_key(flt.key)
    if flt.actor is None and flt.state is None:
        return Plan(by_key, reads_records=flt.reason is not None)
    low, high = _bounds(flt)
    pipe = client.pipeline(transaction=False)
    pipe.zcount(by_key, low, high)
    pipe.zcount(by_kind, low, high)
    in_key, in_kind = (int(n) for n in pipe.execute())
    return Plan(by_key if in_key <= in_kind else by_kind, reads_records=True)


def _bounds(flt: JobFilter) -> tuple[str, str]:
    """The creation window as ZCOUNT/ZRANGEBYSCORE bounds (low inclusive, high exclusive)."""
    low = "-inf" if flt.created_after is None else str(flt.created_after)
    high = "+inf" if flt.created_before is None else f"({flt.created_before}"
    return low, high


def walk(
    client: redis.Redis, index: str, flt: JobFilter, after: Position | None = None, batch: int = WALK_BATCH
) -> Iterator[list[Position]]:
    """The index's members in the filter's window, newest first (same millisecond: id descending, as Redis orders
    them), after `after`, a batch at a time. Each batch is read afresh from the last position, not by offset, so a
    job leaving the index meanwhile (a state index, as jobs move) never makes the walk skip another."""
    low, top = _bounds(flt)
    position = after
    if position is not None:
        score, member = position
        if flt.created_after is not None and score < flt.created_after:
            return
        if flt.created_before is None or score < flt.created_before:
            top = f"({score}"
            # The rest of the position's millisecond (usually a handful of jobs), then on below it.
            rest = [(s, m) for s, m in _scored(client, index, score, score) if m < member]
            for start in range(0, len(rest), batch):
                yield rest[start : start + batch]
    while True:
        chunk = _scored(client, index, top, low, batch)
        if not chunk:
            return
        yield chunk
        score, member = chunk[-1]
        rest = [(s, m) for s, m in _scored(client, index, score, score) if m < member]
        for start in range(0, len(rest), batch):
            yield rest[start : start + batch]
        top = f"({score}"


def _scored(
    client: redis.Redis, index: str, top: str | int, bottom: str | int, num: int | None = None
) -> list[Position]:
    """ZREVRANGEBYSCORE with scores, as (creation ms, job id); `num` of them at most."""
    raw: Any = client.zrevrangebyscore(index, top, bottom, start=0 if num else None, num=num, withscores=True)
    return [(int(score), str(member)) for member, score in raw]


def rows_of(client: redis.Redis, job_ids: Sequence[str], fields: Sequence[str]) -> list[Row]:
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(keys.job(job_id), list(fields))
    return [dict(zip(fields, row, strict=True)) for row in pipe.execute()]


def search(
    client: redis.Redis, flt: JobFilter, *, limit: int, cursor: Position | None, examine: int = EXAMINE_PER_PAGE
) -> tuple[list[str], Position | None]:
    """Up to `limit` matching ids, newest first, after `cursor`, examining at most `examine` jobs; and where to go on
    from (None when the window is walked to its end)."""
    how = plan(client, flt)
    found: list[str] = []
    examined = 0
    last: Position | None = None
    batch = min(WALK_BATCH, limit + 20) if not how.reads_records else WALK_BATCH
    for chunk in walk(client, how.index, flt, cursor, batch):
        chunk = chunk[: examine - examined]
        rows = rows_of(client, [m for _, m in chunk], flt.fields) if how.reads_records else None
        for i, position in enumerate(chunk):
            examined += 1
            last = position
            if rows is None or flt.matches(rows[i]):
                found.append(position[1])
            if len(found) == limit or examined >= examine:
                return found, last
    return found, None


def matching(
    client: redis.Redis, flt: JobFilter, fields: Sequence[str], batch: int = WALK_BATCH
) -> Iterator[list[tuple[str, Row]]]:
    """Every job the filter matches, newest first, a batch at a time, with `fields` of its record (and those the
    filter reads): what a bulk action counts and takes its snapshot from. No cap: the caller counts, or walks it once
    as a run starts."""
    wanted = list(dict.fromkeys([*flt.fields, *fields]))
    how = plan(client, flt)
    for chunk in walk(client, how.index, flt, None, batch):
        rows = rows_of(client, [m for _, m in chunk], wanted)
        yield [(job_id, row) for (_, job_id), row in zip(chunk, rows, strict=True) if flt.matches(row)]
