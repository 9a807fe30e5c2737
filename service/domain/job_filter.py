"""Which jobs a search or a bulk action is about: a key, an actor, a state, a window of creation times and a piece of
text in the failure reason, all optional and combined with AND. One value, shared by the API (`GET /jobs`,
`POST /jobs/bulk`), the CLI (`jobs list`, `jobs bulk`), the dashboard and the bulk runs kept in Redis."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from service.domain import job_key
from service.domain.clock import iso_from_ms
from service.domain.states import JobState

#: A search page examines at most this many jobs; what matches among them is the page (it may be short, with a cursor
#: to go on from). Reading a job's fields costs the web process some 30 us (redis-py's parsing) and Redis a few: a page
#: stays under about 100 ms of work, however rare the text searched for.
EXAMINED_PER_PAGE = 2_000
#: A reason filter longer than this is no search anyone types; it also bounds the work of matching it.
REASON_MAX = 200


class InvalidFilter(ValueError):
    """A filter value that cannot be used; `field` names it as the API does (`createdAfter`), `message` says why."""

    def __init__(self, field: str, message: str, value: object = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.value = value


def parse_time(field: str, text: str) -> int:
    """ISO 8601 (`2025-01-31`, `2025-01-31T14:00:00Z`, `...+02:00`) as epoch ms; a time without a zone is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidFilter(field, "must be an ISO 8601 date or time, such as 2025-01-31T14:00:00Z", text) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class JobFilter:
    """Every job when empty. Times are epoch ms: created at or after `created_after`, and before `created_before`."""

    key: str | None = None
    actor: str | None = None
    state: JobState | None = None
    created_after: int | None = None
    created_before: int | None = None
    #: Case-insensitive text the job's failedReason must contain.
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.key is not None:
            try:
                job_key.checked(self.key)
            except job_key.InvalidKey as error:
                raise InvalidFilter("key", str(error).removeprefix("key: "), self.key) from None
        if self.actor is not None and not 1 <= len(self.actor) <= 200:
            raise InvalidFilter("actor", "must be 1 to 200 characters", self.actor)
        if self.reason is not None and not 1 <= len(self.reason) <= REASON_MAX:
            raise InvalidFilter("reason", f"must be 1 to {REASON_MAX} characters", self.reason)
        after, before = self.created_after, self.created_before
        if after is not None and before is not None and before <= after:
            raise InvalidFilter("createdBefore", "must be later than createdAfter", iso_from_ms(before))

    @classmethod
    def parse(
        cls,
        *,
        key: str | None = None,
        actor: str | None = None,
        state: str | JobState | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
        reason: str | None = None,
    ) -> JobFilter:
        """From text as people and URLs give it; an empty value is no filter. Raises InvalidFilter naming the field."""
        chosen: JobState | None = None
        if state:
            try:
                chosen = JobState(state)
            except ValueError:
                allowed = ", ".join(s.value for s in JobState)
                raise InvalidFilter("state", f"must be one of: {allowed}", state) from None
        return cls(
            key=key or None,
            actor=actor or None,
            state=chosen,
            created_after=parse_time("createdAfter", created_after) if created_after else None,
            created_before=parse_time("createdBefore", created_before) if created_before else None,
            reason=reason.strip() or None if reason else None,
        )

    @property
    def fields(self) -> tuple[str, ...]:
        """The record fields matches() reads for this filter (`state` always: no state, no record)."""
        wanted = {"state": True, "key": self.key is not None, "actor": self.actor is not None}
        wanted |= {"createdMs": self.created_after is not None or self.created_before is not None}
        wanted |= {"failedReason": self.reason is not None}
        return tuple(name for name, needed in wanted.items() if needed)

    @property
    def empty(self) -> bool:
        return self == JobFilter()

    def matches(self, fields: Mapping[str, str | None]) -> bool:
        """Whether a record (at least its `fields`, as Redis gives them) passes every part of the filter."""
        if fields.get("state") is None:
            return False  # no record
        if self.key is not None and fields.get("key") != self.key:
            return False
        if self.actor is not None and fields.get("actor") != self.actor:
            return False
        if self.state is not None and fields.get("state") != self.state.value:
            return False
        created = int(fields.get("createdMs") or 0)
        if self.created_after is not None and created < self.created_after:
            return False
        if self.created_before is not None and created >= self.created_before:
            return False
        return self.reason is None or self.reason.casefold() in (fields.get("failedReason") or "").casefold()

    def as_query(self) -> dict[str, str]:
        """The filter as `GET /jobs` (and the dashboard's links) spell it; only the parts that are set."""
        query = {
            "key": self.key,
            "actor": self.actor,
            "state": self.state.value if self.state else None,
            "createdAfter": iso_from_ms(self.created_after) if self.created_after is not None else None,
            "createdBefore": iso_from_ms(self.created_before) if self.created_before is not None else None,
            "reason": self.reason,
        }
        return {name: value for name, value in query.items() if value is not None}

    def dumps(self) -> str:
        return json.dumps(self.as_query(), sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> JobFilter:
        query = json.loads(text)
        return cls.parse(
            key=query.get("key"),
            actor=query.get("actor"),
            state=query.get("state"),
            created_after=query.get("createdAfter"),
            created_before=query.get("createdBefore"),
            reason=query.get("reason"),
        )


#: A page's cursor: "<createdMs>:<jobId>" of the last job the previous page examined.
CURSOR_PATTERN = r"^[0-9]{1,15}:[A-Za-z0-9_.-]{1,100}$"
_CURSOR = re.compile(CURSOR_PATTERN)


def parse_cursor(text: str | None) -> tuple[int, str] | None:
    """(creation ms, job id) from a cursor; InvalidFilter naming `cursor` when it is not one a page gave."""
    if not text:
        return None
    if not _CURSOR.fullmatch(text):
        raise InvalidFilter("cursor", "must be the `next` an earlier page gave", text)
    score, _, job_id = text.partition(":")
    return int(score), job_id
