"""/jobs: enqueue one job or a batch, read one, list them, cancel and retry. Parse, call the service layer, format."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Response
from pydantic import BaseModel

from service.domain import job_key
from service.domain.job_filter import CURSOR_PATTERN, EXAMINED_PER_PAGE
from service.domain.records import JobRecord
from service.domain.states import JobState, Priority
from service.web import filters, models
from service.web.changing import changing
from service.web.deps import JobsDep

router = APIRouter(prefix="/jobs", tags=["jobs"])

#: Long enough for any sensible key, short enough that a key cannot be used to fill Redis.
IDEMPOTENCY_KEY_MAX = 200
#: Delays are held by a worker until due (Dramatiq's delay queue); a day is the longest this API accepts.
MAX_DELAY_MS = 86_400_000

ActorName = Annotated[str, Path(description="The actor's name, e.g. `ping`", max_length=200)]
JobId = Annotated[str, Path(alias="jobId", description="The job id returned by POST /jobs/{actor}", max_length=200)]
PriorityQuery = Annotated[
    Priority | None, Query(description="`high` jobs are taken before waiting `low` ones; default: the actor's")
]
KeyQuery = Annotated[
    str | None,
    Query(
        pattern=job_key.KEY_PATTERN,
        max_length=job_key.KEY_MAX,
        description="The job's key (a tenant, an account); default: the actor's key field of the payload, if any",
    ),
]
#: The error rows of the routes that enqueue (401 besides).
ENQUEUE_ERRORS = {**models.about_one("Unknown actor"), **models.TOO_LARGE}


def json_response(body: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The body serialised once: given a model, FastAPI would validate it against the route's response_model again
    first, which on the hottest routes costs more than it is worth (the model was built from checked data)."""
    return Response(
        body.model_dump_json(by_alias=True), status_code=status_code, headers=headers, media_type="application/json"
    )


@changing(
    router.post,
    "/{actor}",
    models.Accepted,
    {**ENQUEUE_ERRORS, 202: {"headers": {"Location": {"description": "/jobs/{jobId}", "schema": {"type": "string"}}}}},
    "Enqueue a job",
)
async def enqueue(
    actor: ActorName,
    payload: Annotated[
        dict[str, Any], Body(description="The job's payload: a JSON object checked against the actor's model")
    ],
    jobs: JobsDep,
    priority: PriorityQuery = None,
    delay: Annotated[
        int | None, Query(ge=0, le=MAX_DELAY_MS, description="Milliseconds to wait before it may run")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=IDEMPOTENCY_KEY_MAX,
            description="The same key (for 24 h) returns the first job's id and enqueues nothing",
        ),
    ] = None,
    key: KeyQuery = None,
) -> Response:
    outcome = await jobs.enqueue_async(
        actor, payload, priority=priority, delay_ms=delay, idempotency_key=idempotency_key, key=key
    )
    accepted = models.Accepted(jobId=outcome.job_id, status=outcome.state)
    return json_response(accepted, 202, headers={"Location": f"/jobs/{outcome.job_id}"})


@changing(
    router.post, "/{actor}/batch", models.BatchAccepted, ENQUEUE_ERRORS, "Enqueue many jobs of one actor: all or none"
)
async def enqueue_batch(
    actor: ActorName,
    payloads: Annotated[
        list[dict[str, Any]],
        Body(min_length=1, max_length=10_000, description="A list of payloads; one invalid item refuses them all"),
    ],
    jobs: JobsDep,
    priority: PriorityQuery = None,
    key: KeyQuery = None,
) -> Response:
    job_ids = await jobs.enqueue_batch_async(actor, payloads, priority=priority, key=key)
    return json_response(models.BatchAccepted(jobIds=job_ids), 202)


@router.get(
    "",
    response_model=models.JobPage,
    responses={**models.INVALID, **models.UNAVAILABLE},
    summary="List and search jobs, newest first",
    description=f"Filters combine (AND). The most selective index is walked and at most {EXAMINED_PER_PAGE:,} jobs "
    "are examined for one page, so a page may come back short (even empty) with a `next` cursor to go on from.",
)
def list_jobs(
    jobs: JobsDep,
    state: filters.StateParam = None,
    actor: filters.ActorParam = None,
    key: filters.KeyParam = None,
    created_after: filters.CreatedAfterParam = None,
    created_before: filters.CreatedBeforeParam = None,
    reason: filters.ReasonParam = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN, description="`next` of the previous page")] = None,
) -> models.JobPage:
    flt = filters.from_query(
        key=key, actor=actor, state=state, created_after=created_after, created_before=created_before, reason=reason
    )
    page = jobs.search(flt, limit=limit, cursor=cursor)
    return models.JobPage(jobs=page.jobs, next=page.next)


@router.get(
    "/{jobId}",
    response_model=JobRecord,
    responses=models.about_one("Job not found"),
    summary="One job's record",
)
async def get_job(job_id: JobId, jobs: JobsDep) -> Response:
    # Polled by clients waiting for a job: answered like the enqueue routes, one light hop and one serialisation.
    return json_response(await jobs.get_async(job_id))


@changing(
    router.delete,
    "/{jobId}",
    models.ChangeAccepted,
    {**models.about_one("Job not found"), **models.refused("The job has already finished")},
    "Cancel a job: a waiting one never runs, an active one is asked to stop",
)
def cancel_job(job_id: JobId, jobs: JobsDep) -> models.ChangeAccepted:
    return models.ChangeAccepted(jobId=job_id, status=jobs.cancel(job_id))


@changing(
    router.post,
    "/{jobId}/retry",
    models.ChangeAccepted,
    {**models.about_one("Job not found"), **models.refused("The job is neither failed nor cancelled")},
    "Run a failed or cancelled job again, under the same id, keeping its history",
)
def retry_job(job_id: JobId, jobs: JobsDep, response: Response) -> models.ChangeAccepted:
    jobs.retry(job_id)
    response.headers["Location"] = f"/jobs/{job_id}"
    # The state it was put in; a worker may already have taken it by the time this answer is read.
    return models.ChangeAccepted(jobId=job_id, status=JobState.QUEUED)
