"""How service-layer exceptions become HTTP answers, in one place."""

from __future__ import annotations

import math
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.domain.errors import UnknownQueue
from service.ops.inbound_hooks import HookIdReused, HooksNotAccepted
from service.ops.jobs import (
    BatchInvalid,
    Conflict,
    EnqueueInProgress,
    IdempotencyMismatch,
    JobNotFound,
    Unavailable,
    UnknownActor,
)
from service.ops.unavailable import store_failure


def json_safe(value: Any) -> Any:
    """NaN and Infinity are not JSON. Python's parser takes them in a request, but an answer echoing them back could
    not be written (a 500): they are echoed as the strings "nan" and "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def field_errors(error: ValidationError, *prefix: str | int) -> list[dict[str, Any]]:
    """FastAPI's own 422 shape, so a client handles one kind of validation error whichever layer found it."""
    return [
        {
            "loc": [*prefix, *item["loc"]],
            "msg": item["msg"],
            "type": item["type"],
            "input": json_safe(item.get("input")),
        }
        for item in error.errors(include_url=False, include_context=False)
    ]


#: FastAPI's words when a body cannot even be decoded (bytes that are not UTF-8); the contract says 422 for non-JSON.
UNPARSABLE_BODY = "There was an error parsing the body"


def try_again(detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 400 and error.detail == UNPARSABLE_BODY:
            detail = [
                {"loc": ["body"], "msg": "Body is not JSON (nor UTF-8 text)", "type": "json_invalid", "input": None}
            ]
            return JSONResponse({"detail": detail}, status_code=422)
        return await http_exception_handler(request, error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer, but one that can always be written.
        return JSONResponse({"detail": json_safe(jsonable_encoder(error.errors()))}, status_code=422)

    @app.exception_handler(UnknownActor)
    async def unknown_actor(request: Request, error: UnknownActor) -> JSONResponse:
        return JSONResponse({"detail": f"Unknown actor: {error.args[0]}"}, status_code=404)

    @app.exception_handler(HooksNotAccepted)
    async def hooks_not_accepted(request: Request, error: HooksNotAccepted) -> JSONResponse:
        return JSONResponse({"detail": f"Actor {error.args[0]} does not take hooks"}, status_code=404)

    @app.exception_handler(HookIdReused)
    async def hook_id_reused(request: Request, error: HookIdReused) -> JSONResponse:
        # Which actor it went to is not the caller's business: the id alone is refused.
        return JSONResponse({"detail": "This webhook-id was already sent to another actor"}, status_code=409)

    @app.exception_handler(JobNotFound)
    async def job_not_found(request: Request, error: JobNotFound) -> JSONResponse:
        return JSONResponse({"detail": "Job not found"}, status_code=404)

    @app.exception_handler(UnknownQueue)
    async def unknown_queue(request: Request, error: UnknownQueue) -> JSONResponse:
        return JSONResponse({"detail": f"Unknown queue: {error.args[0]}"}, status_code=404)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, error: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, error: Unavailable) -> JSONResponse:
        return try_again(f"{error.summary}; try again shortly")

    @app.exception_handler(redis.RedisError)
    async def store_error(request: Request, error: redis.RedisError) -> Response:
        # A Redis error that a service call let through: the same answer as if it had said Unavailable.
        found = store_failure(error)
        if found is None:
            raise error  # not about Redis's state: a bug, and Starlette's 500
        return await unavailable(request, found)

    @app.exception_handler(EnqueueInProgress)
    async def in_progress(request: Request, error: EnqueueInProgress) -> JSONResponse:
        return try_again("a request with this Idempotency-Key is still being enqueued; try again shortly")

    @app.exception_handler(ValidationError)
    async def invalid_payload(request: Request, error: ValidationError) -> JSONResponse:
        # Raised by the actor's payload model: the fields are inside the request body.
        return JSONResponse({"detail": field_errors(error, "body")}, status_code=422)

    @app.exception_handler(BatchInvalid)
    async def invalid_batch(request: Request, error: BatchInvalid) -> JSONResponse:
        detail = [item for index, invalid in error.items for item in field_errors(invalid, "body", index)]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(IdempotencyMismatch)
    async def idempotency_mismatch(request: Request, error: IdempotencyMismatch) -> JSONResponse:
        detail = {
            "loc": ["header", "Idempotency-Key"],
            "msg": "this key was used before with a different payload",
            "type": "idempotency_mismatch",
            "input": error.args[0] if error.args else None,
        }
        return JSONResponse({"detail": [detail]}, status_code=422)
