"""Every failure the CLI can meet, as one line on stderr and an exit status scripts can rely on."""

from __future__ import annotations

import json
import sys

import redis
import typer
from pydantic import ValidationError

from service.domain.errors import UnknownQueue, describe_validation
from service.logs import redact
from service.ops.jobs import (
    BatchInvalid,
    Conflict,
    EnqueueInProgress,
    IdempotencyMismatch,
    JobNotFound,
    Unavailable,
    UnknownActor,
)
from service.ops.unavailable import failure

#: Exit statuses (also in the README).
OK = 0
JOB_FAILED = 1  #: `send --wait` saw the job fail or be cancelled, or stopped waiting
BAD_INPUT = 2  #: usage, unknown actor or queue, invalid JSON or payload
NOT_ALLOWED = 3  #: no such job, or the job's state does not allow it
UNREACHABLE = 4  #: RabbitMQ or Redis did not answer
UNEXPECTED = 70  #: a bug: still one line, never a traceback


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def describe(error: BaseException) -> tuple[str, int]:
    """(one line, exit status) for any exception."""
    if isinstance(error, CliError):
        return str(error), error.code
    if isinstance(error, typer.TyperException):  # usage errors: bad option, missing argument
        return error.format_message(), BAD_INPUT
    if isinstance(error, UnknownActor):
        return f"unknown actor '{error.args[0]}'", BAD_INPUT
    if isinstance(error, UnknownQueue):
        return f"unknown queue '{error.args[0]}'", BAD_INPUT
    if isinstance(error, ValidationError):
        return describe_validation(error), BAD_INPUT
    if isinstance(error, BatchInvalid | IdempotencyMismatch):
        return f"invalid payload: {error}", BAD_INPUT
    if isinstance(error, json.JSONDecodeError):
        return f"invalid JSON payload: {error.msg} at line {error.lineno} column {error.colno}", BAD_INPUT
    if isinstance(error, JobNotFound):
        return f"job not found: {error.args[0]}", NOT_ALLOWED
    if isinstance(error, Conflict):
        return str(error), NOT_ALLOWED
    if (unavailable := failure(error) if isinstance(error, Unavailable | redis.RedisError) else None) is not None:
        return f"{unavailable.summary}: {_detail(unavailable)}", UNREACHABLE
    if isinstance(error, EnqueueInProgress):
        return f"a request with Idempotency-Key {error.args[0]!r} is still being enqueued; try again", UNREACHABLE
    if isinstance(error, TimeoutError):
        return str(error), JOB_FAILED
    return f"unexpected error: {type(error).__name__}: {error}", UNEXPECTED


def _detail(error: Unavailable) -> str:
    # "rabbitmq unreachable: <detail>" with the side said once; pika's messages can be empty or repr-like.
    return error.detail.strip() or "no answer"


def fail(error: BaseException) -> int:
    line, code = describe(error)
    line = " ".join(redact(line).split())  # one line, whatever the exception's text held
    print(f"error: {line}", file=sys.stderr)
    return code
