"""A job filter (service/domain/job_filter.py) from a request, the same for `GET /jobs`, `POST /jobs/bulk` and the
dashboard; a value that does not make one is 422 naming it where it was given (`["query", "createdAfter"]`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from fastapi.exceptions import RequestValidationError

from service.domain import job_key
from service.domain.job_filter import REASON_MAX, InvalidFilter, JobFilter
from service.domain.states import JobState

#: An ISO 8601 time is never longer; a longer one is 422 before anything is parsed.
TIME_MAX = 64

KeyParam = Annotated[
    str | None,
    Query(pattern=job_key.KEY_PATTERN, max_length=job_key.KEY_MAX, description="Only jobs of this key"),
]
ActorParam = Annotated[str | None, Query(max_length=200, description="Only jobs of this actor")]
StateParam = Annotated[JobState | None, Query(description="Only jobs in this state")]
CreatedAfterParam = Annotated[
    str | None,
    Query(
        alias="createdAfter",
        max_length=TIME_MAX,
        description="Only jobs created at or after this time (ISO 8601; no zone: UTC)",
    ),
]
CreatedBeforeParam = Annotated[
    str | None,
    Query(alias="createdBefore", max_length=TIME_MAX, description="Only jobs created before this time (ISO 8601)"),
]
ReasonParam = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=REASON_MAX,
        description="Only jobs whose failedReason contains this text (case-insensitive)",
    ),
]


def invalid(error: InvalidFilter, *where: str | int) -> RequestValidationError:
    """FastAPI's own 422, naming the field where the request gave it."""
    detail = {"loc": [*where, error.field], "msg": error.message, "type": "value_error", "input": error.value}
    return RequestValidationError([detail])


def from_query(
    *,
    key: str | None = None,
    actor: str | None = None,
    state: JobState | str | None = None,
    created_after: str | None = None,
    created_before: str | None = None,
    reason: str | None = None,
) -> JobFilter:
    try:
        return JobFilter.parse(
            key=key,
            actor=actor,
            state=state,
            created_after=created_after,
            created_before=created_before,
            reason=reason,
        )
    except InvalidFilter as error:
        raise invalid(error, "query") from None
