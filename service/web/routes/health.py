"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.web.deps import JobsDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "RabbitMQ or Redis is down"}})
def readyz(jobs: JobsDep) -> JSONResponse:
    down = jobs.unreachable()
    if down:
        return JSONResponse(
            {"status": "unavailable", "down": down, "detail": f"{', '.join(down)} unreachable"}, status_code=503
        )
    return JSONResponse({"status": "ok", "down": []})
