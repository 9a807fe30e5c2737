"""What the API answers with, as pydantic models, so the OpenAPI document describes the real bodies."""

from __future__ import annotations

from typing import Any

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_snake

from service.domain.records import JobRecord
from service.domain.states import JobState


class ServiceView(BaseModel):
    """A response read from a service-layer object with `model_validate(obj)`: each camelCase field from the
    snake_case attribute of the same name (`jobId` from `job_id`), nested views too. Built by name as well."""

    model_config = ConfigDict(
        from_attributes=True, alias_generator=AliasGenerator(validation_alias=to_snake), validate_by_name=True
    )


class Accepted(BaseModel):
    """202 for one job. `status` is the state it was put in: `queued`, or `delayed` when a delay was asked for."""

    jobId: str
    status: JobState


class BatchAccepted(BaseModel):
    """202 for a batch: the ids in the order of the payloads."""

    jobIds: list[str]


class JobPage(BaseModel):
    """Newest first. Pass `next` as `cursor` to get the following page; it is null on the last one."""

    jobs: list[JobRecord]
    next: str | None


class ChangeAccepted(BaseModel):
    """202 for a cancel or a retry: the job and the state it is in (or heading to) now."""

    jobId: str
    status: str = Field(description="cancelled, cancelling (an active job was asked to stop), or queued (retried)")


class QueueFigures(ServiceView):
    name: str
    waiting: int = Field(description="Ready in RabbitMQ (messages a worker has prefetched are not counted)")
    active: int = Field(description="Running now (job store)")
    completed: int = Field(description="Completed and still retained (job store)")
    failed: int = Field(description="Failed and still retained (job store)")
    delayed: int = Field(description="Waiting for a delay or a retry: RabbitMQ's delay queue or the store, the larger")
    paused: bool
    dead: int = Field(description="In the dead-letter queue `<name>.XQ`")


class Purged(ServiceView):
    queue: str
    messages: int = Field(description="Messages removed from the queue and its delay queue")
    cancelled: int = Field(description="Waiting jobs marked cancelled")


class QueuePaused(BaseModel):
    queue: str
    paused: bool = Field(description="Whether workers start jobs from this queue: false after resume")


class ErrorDetail(BaseModel):
    detail: str


class FieldError(BaseModel):
    """Same shape as FastAPI's own validation errors: `loc` names the field, e.g. ["body", "a"]."""

    loc: list[str | int]
    msg: str
    type: str
    input: Any = None


class FieldErrors(BaseModel):
    detail: list[FieldError]


#: Error rows shared by the routes, for the OpenAPI document.
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorDetail, "description": "RabbitMQ or Redis unreachable; nothing was written"}
}
INVALID: dict[int | str, dict[str, Any]] = {422: {"model": FieldErrors, "description": "Invalid input; `loc` names it"}}
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "Missing or wrong bearer token (when API_TOKEN is set)"}
}
TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorDetail, "description": "Body larger than MAX_PAYLOAD_BYTES"}
}


def not_found(what: str) -> dict[int | str, dict[str, Any]]:
    return {404: {"model": ErrorDetail, "description": what}}


def refused(why: str) -> dict[int | str, dict[str, Any]]:
    return {409: {"model": ErrorDetail, "description": why}}


def about_one(what: str) -> dict[int | str, dict[str, Any]]:
    """The rows of a route about one named thing (a job, a queue): 404 naming `what`, 422, 503."""
    return {**not_found(what), **INVALID, **UNAVAILABLE}
