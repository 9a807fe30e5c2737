"""The dashboard's page of one queue's dead letters: a page of them, and requeue or delete (one or all) through the
same routes the API has (/queues/{name}/dead/...), each behind a confirmation and the token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from service.ops.jobs import UnknownQueue
from service.web.dashboard.pages import render
from service.web.routes.dead import MAX_OFFSET, DeadJobsDep

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 25


@router.get("/dashboard/queues/{name}/dead")
def dead_letters_page(
    name: str,
    dead: DeadJobsDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Response:
    context = {"section": "overview"}
    try:
        page = dead.page(name, offset, PAGE_SIZE)
    except UnknownQueue:
        return render("dead.html", {**context, "queue": name, "page": None}, status_code=404)
    progress = dead.progress(name)
    previous = max(0, offset - PAGE_SIZE) if offset else None
    return render(
        "dead.html",
        {**context, "queue": name, "page": page, "progress": progress, "previous": previous},
    )
