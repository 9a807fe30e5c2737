"""The dashboard's pages. Each parses its query, asks the service layer, and renders a template; nothing else."""

from __future__ import annotations

import contextlib
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from service.domain.job_filter import CURSOR_PATTERN, REASON_MAX, InvalidFilter, JobFilter
from service.domain.states import FINAL_STATES, RETRYABLE_STATES, JobState
from service.ops.jobs import JobNotFound
from service.web.dashboard import actions, attempts, busy, dead, delayed
from service.web.dashboard.chart import throughput_chart
from service.web.dashboard.pages import HERE, render
from service.web.deps import ActivityDep, EventLogDep, JobLogsDep, JobsDep, QueuesDep, SchedulesDep

router = APIRouter(include_in_schema=False)
static_files = StaticFiles(directory=HERE / "static")
router.include_router(actions.router)
router.include_router(delayed.router)
router.include_router(dead.router)
router.include_router(busy.router)

PAGE_SIZE = 25
#: The API's own pattern: ASCII digits only (`\d` also takes "٣" or "²", which the store cannot read: a 500).
CURSOR = re.compile(CURSOR_PATTERN)


@router.get("/")
def overview(queues: QueuesDep, activity: ActivityDep, events: EventLogDep) -> Response:
    return render(
        "overview.html",
        {
            "section": "overview",
            "queues": queues.figures(),
            "chart": throughput_chart(activity.throughput(60)),
            "workers": activity.workers(),
            "events": list(reversed(events.recent(15))),  # newest first, from the lifecycle-event stream
        },
    )


@router.get("/dashboard")
def dashboard_root() -> Response:
    return RedirectResponse("/", status_code=308)


@router.get("/dashboard/jobs")
def job_list(
    jobs: JobsDep,
    state: Annotated[str, Query(max_length=20)] = "",
    actor: Annotated[str, Query(max_length=200)] = "",
    key: Annotated[str, Query(max_length=200)] = "",
    created_after: Annotated[str, Query(alias="createdAfter", max_length=64)] = "",
    created_before: Annotated[str, Query(alias="createdBefore", max_length=64)] = "",
    reason: Annotated[str, Query(max_length=REASON_MAX)] = "",
    cursor: Annotated[str, Query()] = "",
    q: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    given = {"state": state, "actor": actor, "key": key, "createdAfter": created_after}
    given |= {"createdBefore": created_before, "reason": reason}
    context: dict[str, Any] = {
        "section": "jobs",
        "actors": jobs.actor_names(),
        "states": [s.value for s in JobState],
        **given,
        "filtered": any(given.values()),
        # The filters as given, for the paging links: the page after this one keeps them.
        "query": urlencode({name: value for name, value in given.items() if value}),
        "cursor": cursor,
        "q": q.strip(),
        "page": None,
        "missing": None,
        "problem": None,
        "bulk_filter": None,
    }
    if context["q"]:
        try:
            jobs.get(context["q"])
        except JobNotFound:
            # Said plainly, with a 404: an unknown id is never shown as a job that is "pending".
            return render("jobs.html", {**context, "missing": context["q"]}, status_code=404)
        return RedirectResponse(f"/dashboard/jobs/{quote(context['q'], safe='')}", status_code=303)
    if cursor and not CURSOR.fullmatch(cursor):
        return render("jobs.html", {**context, "problem": "cursor must be the one an earlier page gave"}, 422)
    try:
        flt = JobFilter.parse(
            key=key, actor=actor, state=state, created_after=created_after, created_before=created_before, reason=reason
        )
    except InvalidFilter as error:
        return render("jobs.html", {**context, "problem": f"{error.field} {error.message}"}, status_code=422)
    page = jobs.search(flt, limit=PAGE_SIZE, cursor=cursor or None)
    # The bulk form acts on exactly the filter this page shows (static/dashboard.js sends it to POST /jobs/bulk).
    return render("jobs.html", {**context, "page": page, "bulk_filter": json.dumps(flt.as_query())})


@router.get("/dashboard/jobs/{job_id}")
def job_page(job_id: str, jobs: JobsDep, job_logs: JobLogsDep) -> Response:
    try:
        record = jobs.get(job_id)
        logs = job_logs.page(job_id).lines
    except JobNotFound:
        return render("missing.html", {"section": "jobs", "job_id": job_id}, status_code=404)
    tried = attempts.attempts(record.history)
    return render(
        "job.html",
        {
            "section": "jobs",
            "job": record,
            "final": record.state in FINAL_STATES,
            "retryable": record.state in RETRYABLE_STATES,
            "attempts": tried,
            "spans": attempts.timeline(record.createdAt, tried, datetime.now(UTC)),
            "logs": logs,
        },
    )


@router.get("/dashboard/schedules")
def schedules_page(jobs: JobsDep, schedules: SchedulesDep) -> Response:
    views = schedules.list()
    last_states: dict[str, str] = {}
    for view in views:
        if view.state.last_job_id:
            with contextlib.suppress(JobNotFound):  # removed by retention: the page says so
                last_states[view.actor] = jobs.get(view.state.last_job_id).state.value
    return render("schedules.html", {"section": "schedules", "schedules": views, "last_states": last_states})
