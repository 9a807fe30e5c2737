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
from service.ops.bulk import BulkNotFound
from service.ops.errors import MEANINGS, Meaning, meaning_of, worded
from service.ops.inbound_hooks import HookIdReused, HooksNotAccepted
from service.ops.jobs import BatchInvalid, EnqueueInProgress, IdempotencyMismatch, JobNotFound, UnknownActor
from service.ops.unavailable import Unavailable, store_failure


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


#: The HTTP status of each meaning of a service-layer error (service/ops/errors.py).
STATUS = {
    Meaning.UNKNOWN: 404,
    Meaning.NOT_FOUND: 404,
    Meaning.REFUSED: 409,
    Meaning.INVALID: 422,
    Meaning.TRY_AGAIN: 503,
}


#: The answer's `detail` for the service-layer errors a sentence describes.
DETAIL = {
    UnknownActor: "Unknown actor: {0}",
    UnknownQueue: "Unknown queue: {0}",
    HooksNotAccepted: "Actor {0} does not take hooks",
    JobNotFound: "Job not found",
    BulkNotFound: "Bulk run not found",
    HookIdReused: "This webhook-id was already sent to another actor",  # not which: that is not the caller's business
    EnqueueInProgress: "a request with this Idempotency-Key is still being enqueued; try again shortly",
}


def detail_of(error: Exception) -> Any:
    """The answer's `detail` for a service-layer error: a sentence, or FastAPI's list of field errors."""
    if isinstance(error, Unavailable):
        return f"{error.summary}; try again shortly"
    if isinstance(error, ValidationError):
        # Raised by the actor's payload model: the fields are inside the request body.
        return field_errors(error, "body")
    if isinstance(error, BatchInvalid):
        return [item for index, invalid in error.items for item in field_errors(invalid, "body", index)]
    if isinstance(error, IdempotencyMismatch):
        return [
            {
                "loc": ["header", "Idempotency-Key"],
                "msg": "this key was used before with a different payload",
                "type": "idempotency_mismatch",
                "input": error.args[0] if error.args else None,
            }
        ]
    return worded(error, DETAIL) or str(error)  # Conflict says what the job's state does not allow


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

    async def service_error(request: Request, error: Exception) -> Response:
        meaning = meaning_of(error)
        assert meaning is not None, error  # registered for the table's errors only
        headers = {"Retry-After": "5"} if meaning is Meaning.TRY_AGAIN else None
        return JSONResponse({"detail": detail_of(error)}, status_code=STATUS[meaning], headers=headers)

    for kind in MEANINGS:
        app.add_exception_handler(kind, service_error)

    @app.exception_handler(redis.RedisError)
    async def store_error(request: Request, error: redis.RedisError) -> Response:
        # A Redis error that a service call let through: the same answer as if it had said Unavailable.
        found = store_failure(error)
        if found is None:
            raise error  # not about Redis's state: a bug, and Starlette's 500
        return await service_error(request, found)
