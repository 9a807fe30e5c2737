"""How service-layer exceptions become HTTP answers, in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from service.jobs import Conflict, JobNotFound, Unavailable, UnknownActor


def install(app: FastAPI) -> None:
    @app.exception_handler(UnknownActor)
    async def unknown_actor(request: Request, error: UnknownActor) -> JSONResponse:
        return JSONResponse({"detail": f"Unknown actor: {error.args[0]}"}, status_code=404)

    @app.exception_handler(JobNotFound)
    async def job_not_found(request: Request, error: JobNotFound) -> JSONResponse:
        return JSONResponse({"detail": "Job not found"}, status_code=404)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, error: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, error: Unavailable) -> JSONResponse:
        return JSONResponse(
            {"detail": f"{error.side} unreachable; try again shortly"}, status_code=503, headers={"Retry-After": "5"}
        )
