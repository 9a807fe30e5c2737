"""@job: a Dramatiq actor with a pydantic payload model, validated when sent and again when run.

Its actors satisfy service.domain.typed_job.TypedJob, which is all the service layer knows of them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import dramatiq
from pydantic import BaseModel, ValidationError

from service.domain import flow_control, job_key
from service.domain.errors import InvalidPayload, describe_validation
from service.domain.periodic import NEVER, Periodic, is_on
from service.domain.states import BROKER_PRIORITY, Priority
from service.domain.typed_job import TypedJob
from service.settings import get_settings
from service.store.record_fields import to_json
from service.worker import ticks

PayloadT = TypeVar("PayloadT", bound=BaseModel)


class TypedActor(dramatiq.Actor[..., Any]):
    """Still a Dramatiq actor (send, send_with_options, pipelines and groups work); it only checks payloads."""

    payload_model: type[BaseModel]
    job_priority: Priority
    #: Other systems may trigger it with a signed POST /hooks/{actor}: only when its @job says hooks=True.
    accepts_hooks: bool = False
    #: The payload field that holds each job's key (@job's `key=`), or None: then only a sender's key counts.
    key_field: str | None = None

    def validate(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The payload as it will travel: validated, normalised to JSON types. Raises pydantic's ValidationError."""
        return self.payload_model.model_validate(kwargs).model_dump(mode="json")

    def message_of(self, payload: dict[str, Any], **options: Any) -> dramatiq.Message[Any]:
        """The message for a payload that `validate` returned: checked once, never again."""
        options.setdefault("broker_priority", BROKER_PRIORITY[self.job_priority])
        key = job_key.key_of(options, payload, self.key_field)
        if key is not None:
            options[job_key.OPTION] = key
        else:
            options.pop(job_key.OPTION, None)
        return super().message_with_options(args=(), kwargs=payload, **options)

    def message_with_options(
        self, *, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> dramatiq.Message[Any]:
        if args:
            raise TypeError(f"{self.actor_name} takes its payload as keyword arguments")
        return self.message_of(self.validate(kwargs or {}), **options)

    def send_with_options(
        self,
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        delay: Any = None,
        **options: Any,
    ) -> dramatiq.Message[Any]:
        # periodiq's Scheduler sends a tick as send_with_options(scheduled_at=...): only the first sender of a tick,
        # across every scheduler, publishes it. Any other send is a plain send.
        if "scheduled_at" in options and not args and delay is None and is_on(self):
            scheduled_at = options.pop("scheduled_at")
            sent = ticks.send_tick(self, scheduled_at, kwargs=kwargs, options=options)
            return next((message for message, published in sent if published), sent[0][0])
        if isinstance(delay, timedelta):
            delay = int(delay.total_seconds() * 1000)
        message = self.message_with_options(args=args, kwargs=kwargs, **options)
        debounce_ms = flow_control.rules_of(self.options).debounce_ms
        if debounce_ms is not None and message.options.get(job_key.OPTION) is not None:
            # Debounced: due that long after this send (service/worker/middleware/debounce.py stamps and notes it).
            delay = max(delay or 0, debounce_ms)
        return self.broker.enqueue(message, delay=delay)


#: What the service layer reads @job's actors as; mypy checks here that they are.
AS_THE_SERVICE_LAYER_SEES_IT: type[TypedJob] = TypedActor


def job(
    payload: type[PayloadT],
    *,
    queue: str,
    priority: Priority | str = Priority.NORMAL,
    actor_name: str | None = None,
    hooks: bool = False,
    key: str | None = None,
    **options: Any,
) -> Callable[[Callable[[PayloadT], Any]], TypedActor]:
    """Declare a job. Options are Dramatiq's and the service's: max_retries, retry_delays, retry_backoff,
    time_limit, rate_limit, periodic ("0 * * * *" or Periodic), ... `hooks=True` lets other systems
    trigger it through POST /hooks/{actor} (signed); without it that route answers 404 for this job.
    `key="account_id"` names the payload field that holds each job's key (service/domain/job_key.py); per key,
    `singleton=True` allows one job queued or running, `debounce="5s"` runs the last send that long after it
    (service/domain/flow_control.py)."""
    level = Priority(priority)
    if key is not None and key not in payload.model_fields:
        raise ValueError(f"key={key!r}: {payload.__name__} has no such field")
    periodic: str | Periodic | None = options.pop("periodic", None)

    def decorate(fn: Callable[[PayloadT], Any]) -> TypedActor:
        def run(*args: Any, **kwargs: Any) -> Any:
            # Other services are not trusted: the worker checks the payload again.
            if args:
                raise InvalidPayload("invalid payload: positional arguments given; send keyword arguments")
            try:
                model = payload.model_validate(kwargs)
            except ValidationError as error:
                raise InvalidPayload(describe_validation(error)) from None
            result = fn(model)
            value = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
            # Checked here, in the job, so that a result over the cap fails the job like any error would.
            to_json(value, max_bytes=get_settings().max_result_bytes)
            return value

        run.__name__ = fn.__name__
        run.__qualname__ = fn.__qualname__
        run.__module__ = fn.__module__
        run.__doc__ = fn.__doc__
        # The job store already keeps every result (JobRecord.result); Dramatiq's result backend is there for
        # actors that opt in with store_results=True, e.g. to use group(...).get_results().
        options.setdefault("store_results", False)
        name = actor_name or fn.__name__
        if periodic is not None:
            # periodiq schedules actors whose `periodic` option is set. Switched off, it is one never due: the
            # actor is listed as "off", and a scheduler with every schedule off starts and idles instead of exiting.
            schedule = ticks.declare_or_exit(name, periodic)
            options["schedule"] = schedule
            options["periodic"] = schedule.cron if schedule.cron is not None else NEVER
        declare = dramatiq.actor(actor_class=TypedActor, actor_name=name, queue_name=queue, **options)
        actor = declare(run)
        assert isinstance(actor, TypedActor)
        actor.payload_model = payload
        actor.job_priority = level
        actor.accepts_hooks = hooks
        actor.key_field = key
        return actor

    return decorate
