"""What each service-layer error means to whoever asked, in one table: the API turns a meaning into an HTTP status
(service/web/errors.py), the CLI into an exit status (service/cli/errors.py), each saying it in its own words."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from pydantic import ValidationError

from service.domain.errors import UnknownQueue
from service.domain.job_filter import InvalidFilter
from service.domain.job_key import InvalidKey
from service.ops.bulk import BulkNotFound
from service.ops.flow import KeyRepeated
from service.ops.inbound_hooks import HookIdReused, HooksNotAccepted
from service.ops.jobs import (
    BatchInvalid,
    Conflict,
    EnqueueInProgress,
    IdempotencyMismatch,
    JobNotFound,
    UnknownActor,
)
from service.ops.unavailable import Unavailable


class Meaning(Enum):
    UNKNOWN = "unknown"  #: no such actor or queue, or an actor that takes no hooks: the name given is wrong
    NOT_FOUND = "not found"  #: no such job (or bulk run)
    REFUSED = "refused"  #: the job's state does not allow it, or the webhook id went to another actor first
    INVALID = "invalid"  #: the payload, or the Idempotency-Key that came with it, does not fit
    TRY_AGAIN = "try again"  #: RabbitMQ or Redis cannot serve the call, or the same request is still under way


MEANINGS: dict[type[Exception], Meaning] = {
    UnknownActor: Meaning.UNKNOWN,
    UnknownQueue: Meaning.UNKNOWN,
    HooksNotAccepted: Meaning.UNKNOWN,
    JobNotFound: Meaning.NOT_FOUND,
    BulkNotFound: Meaning.NOT_FOUND,
    Conflict: Meaning.REFUSED,
    HookIdReused: Meaning.REFUSED,
    ValidationError: Meaning.INVALID,  # the actor's payload model
    BatchInvalid: Meaning.INVALID,
    IdempotencyMismatch: Meaning.INVALID,
    InvalidKey: Meaning.INVALID,
    KeyRepeated: Meaning.INVALID,
    InvalidFilter: Meaning.INVALID,
    Unavailable: Meaning.TRY_AGAIN,
    EnqueueInProgress: Meaning.TRY_AGAIN,
}


def meaning_of(error: BaseException) -> Meaning | None:
    """The meaning of an error of the table (or of a subclass of one), or None for any other: a bug."""
    for kind in type(error).__mro__:
        meaning = MEANINGS.get(kind)
        if meaning is not None:
            return meaning
    return None


def worded(error: BaseException, templates: Mapping[type[Exception], str]) -> str | None:
    """A face's sentence for the error from its own templates (`{0}`: the error's first argument), or None."""
    for kind, template in templates.items():
        if isinstance(error, kind):
            return template.format(*error.args)
    return None
