"""Exceptions that carry meaning across layers, and the one way an invalid payload is put into words."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dramatiq.middleware import Interrupt, Shutdown

if TYPE_CHECKING:
    from pydantic import ValidationError


class InvalidPayload(Exception):
    """The payload does not match the actor's model. Never retried."""


def describe_validation(error: ValidationError) -> str:
    """ "to: value is not a valid email address; subject: Field required" - one clause per bad field."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "payload"
        parts.append(f"{where}: {item['msg']}")
    return "invalid payload: " + "; ".join(parts)


class UnknownQueue(LookupError):
    """No declared job uses this queue: the API answers 404, the CLI exits 2, the dashboard shows it missing."""


class JobCancelled(Exception):
    """Raised inside a running job when cancellation was requested. Never retried."""


class PermanentError(Exception):
    """Raise from a job for failures that another attempt cannot fix (a 5xx SMTP reply, a 404). Never retried."""


class ResultTooLarge(PermanentError):
    """A job returned more than MAX_RESULT_BYTES of JSON: not stored, and not retried (it would return as much)."""


class WorkerStopped(Shutdown):
    """Raised inside a job still running when its worker's shutdown timeout ends. The job runs again elsewhere;
    the interruption does not use up its retries."""


class LeaseLost(Interrupt):
    """Raised inside a job whose worker lost its lease (another attempt took the job over, or Redis was away for
    most of the lease). The attempt records nothing and uses no retry: its message goes back to RabbitMQ."""


class AttemptAbandoned(Exception):
    """Raised by an after hook when an attempt ended with no outcome to record (it lost its lease, or its retry could
    not be published): its message goes back to RabbitMQ unacknowledged (service/worker/hook_failures.py)."""
