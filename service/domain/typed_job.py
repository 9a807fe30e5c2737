"""What the service layer needs of a declared job: its names, payload model and priority, and its messages.

`@job` (service/worker/typed_actor.py) declares actors that satisfy it; the service layer reads the broker's actors
through it, so it never imports the worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

if TYPE_CHECKING:
    import dramatiq
    from pydantic import BaseModel

    from service.domain.states import Priority


class TypedJob(Protocol):
    actor_name: str
    queue_name: str
    payload_model: type[BaseModel]
    job_priority: Priority
    #: Other systems may trigger it with a signed POST /hooks/{actor}: only when its @job says hooks=True.
    accepts_hooks: bool
    #: Its Dramatiq options, as declared (flow control reads `singleton` and `debounce` from them).
    options: dict[str, Any]

    def validate(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The payload as it will travel: validated, normalised to JSON types. Raises pydantic's ValidationError."""
        ...

    def message_of(self, payload: dict[str, Any], **options: Any) -> dramatiq.Message[Any]:
        """The message for a payload that `validate` returned: checked once, never again."""
        ...


def is_typed_job(actor: object) -> TypeGuard[TypedJob]:
    """Whether a declared actor is one of `@job`'s (a plain Dramatiq actor has no payload model)."""
    return getattr(actor, "payload_model", None) is not None
