"""The job filter's options (service/domain/job_filter.py), the same for `jobs list` and `jobs bulk`; a value that
does not make a filter is one line naming the option, exit status 2."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from service.cli.errors import BAD_INPUT, CliError
from service.domain.job_filter import InvalidFilter, JobFilter
from service.domain.states import JobState

#: The option that gives each part of the filter, by the name the filter (and the API) gives it.
OPTIONS = {
    "key": "--key",
    "actor": "--actor",
    "state": "--state",
    "createdAfter": "--created-after",
    "createdBefore": "--created-before",
    "reason": "--reason",
    "cursor": "--cursor",
}

KeyOption = Annotated[str | None, typer.Option(help="Only jobs of this key (a tenant, an account).")]
ActorOption = Annotated[str | None, typer.Option(help="Only this actor's jobs.")]
StateOption = Annotated[JobState | None, typer.Option(help="Only jobs in this state.")]
CreatedAfterOption = Annotated[
    str | None, typer.Option(help="Only jobs created at or after this time (ISO 8601; no zone: UTC).")
]
CreatedBeforeOption = Annotated[str | None, typer.Option(help="Only jobs created before this time (ISO 8601).")]
ReasonOption = Annotated[
    str | None, typer.Option(help="Only jobs whose failure reason contains this text (case-insensitive).")
]


def job_filter(**parts: Any) -> JobFilter:
    """JobFilter.parse(...), its complaint naming the option rather than the API's field."""
    try:
        return JobFilter.parse(**parts)
    except InvalidFilter as error:
        raise worded(error) from None


def worded(error: InvalidFilter) -> CliError:
    return CliError(f"{OPTIONS.get(error.field, error.field)}: {error.message}", BAD_INPUT)
