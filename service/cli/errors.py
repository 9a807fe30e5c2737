"""Every failure the CLI can meet, as one line on stderr and an exit status scripts can rely on."""

from __future__ import annotations

import json
import sys

import typer
from pydantic import ValidationError

from service.logs import redact
from service.ops.errors import Meaning, meaning_of, worded
from service.ops.jobs import BatchInvalid, EnqueueInProgress, IdempotencyMismatch, JobNotFound, UnknownActor
from service.ops.queues import UnknownQueue
from service.ops.unavailable import Unavailable, store_failure
from service.worker.typed_actor import describe_validation

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


#: The exit status of each meaning of a service-layer error (service/ops/errors.py).
EXIT_STATUS = {
    Meaning.UNKNOWN: BAD_INPUT,
    Meaning.INVALID: BAD_INPUT,
    Meaning.NOT_FOUND: NOT_ALLOWED,
    Meaning.REFUSED: NOT_ALLOWED,
    Meaning.TRY_AGAIN: UNREACHABLE,
}


def describe(error: BaseException) -> tuple[str, int]:
    """(one line, exit status) for any exception."""
    if isinstance(error, CliError):
        return str(error), error.code
    if isinstance(error, typer.TyperException):  # usage errors: bad option, missing argument
        return error.format_message(), BAD_INPUT
    if isinstance(error, json.JSONDecodeError):
        return f"invalid JSON payload: {error.msg} at line {error.lineno} column {error.colno}", BAD_INPUT
    if (unavailable := store_failure(error)) is not None:
        error = unavailable
    meaning = meaning_of(error)
    if meaning is not None:
        return _line(error), EXIT_STATUS[meaning]
    if isinstance(error, TimeoutError):
        return str(error), JOB_FAILED
    return f"unexpected error: {type(error).__name__}: {error}", UNEXPECTED


#: The line for the service-layer errors a sentence describes.
LINES = {
    UnknownActor: "unknown actor '{0}'",
    UnknownQueue: "unknown queue '{0}'",
    JobNotFound: "job not found: {0}",
    EnqueueInProgress: "a request with Idempotency-Key {0!r} is still being enqueued; try again",
}


def _line(error: BaseException) -> str:
    """The line for an error of the table."""
    if isinstance(error, ValidationError):
        return describe_validation(error)
    if isinstance(error, BatchInvalid | IdempotencyMismatch):
        return f"invalid payload: {error}"
    if isinstance(error, Unavailable):
        return f"{error.summary}: {_detail(error)}"
    return worded(error, LINES) or str(error)  # Conflict says what the job's state does not allow


def _detail(error: Unavailable) -> str:
    # "rabbitmq unreachable: <detail>" with the side said once; pika's messages can be empty or repr-like.
    return error.detail.strip() or "no answer"


def fail(error: BaseException) -> int:
    line, code = describe(error)
    line = " ".join(redact(line).split())  # one line, whatever the exception's text held
    print(f"error: {line}", file=sys.stderr)
    return code
