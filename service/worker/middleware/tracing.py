"""A span per attempt, child of the sender's trace context; the trace context put into every message sent.

Every attempt of a job is a child of the span that sent it (the HTTP request, or the caller of `actor.send()`), so a
job's attempts share one trace; each retry's span also links to the previous attempt's. A job whose sender had no
trace context gets its first attempt as the root, and its retries become children of that first attempt.
Inert while tracing is off (service/tracing.py): each hook returns at its first line.
"""

from __future__ import annotations

import threading
from enum import StrEnum
from typing import Any

import dramatiq
from dramatiq.common import q_name
from dramatiq.middleware import Middleware

from service import tracing
from service.domain.errors import JobCancelled, LeaseLost
from service.worker.middleware.retries import describe, stored_traceback


class AttemptOutcome(StrEnum):
    """How an attempt ended, as its span's `job.outcome` attribute."""

    COMPLETED = "completed"
    FAILED = "failed"  #: no retry left, or not retryable
    RETRYING = "retrying"  #: failed; its retry is published
    CANCELLED = "cancelled"
    LEASE_LOST = "lease lost"  #: another worker took the job over; this attempt records nothing
    SKIPPED = "skipped"  #: not run (already final, held elsewhere, or rejected)


class _Attempt:
    def __init__(self, job_id: str, span: Any, token: object) -> None:
        self.job_id = job_id
        self.span = span
        self.token = token


class AttemptSpans(Middleware):
    """Before the status middleware in the list: its span is open when "active" is written (which stores the trace id)
    and, "after" hooks running in reverse, still open when the retry middleware publishes the retry."""

    def __init__(self) -> None:
        self._local = threading.local()  # a worker thread runs one attempt at a time

    # -- sender side -----------------------------------------------------------------------------------------

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        if not tracing.is_on():
            return
        attempt: _Attempt | None = getattr(self._local, "attempt", None)
        if attempt is not None and attempt.job_id == message.message_id:
            # This job's own retry (or deferral): its sender's context stays; the next attempt links to this one.
            previous = tracing.traceparent_of(attempt.span)
            message.options.setdefault(tracing.TRACEPARENT, previous)
            message.options[tracing.PREVIOUS_ATTEMPT] = previous
        elif tracing.TRACEPARENT not in message.options:
            message.options.update(tracing.current_options())

    # -- worker side -----------------------------------------------------------------------------------------

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if not tracing.is_on():
            return
        from opentelemetry import context, trace

        self._end(AttemptOutcome.SKIPPED, None)  # one left open by a hook that failed on this thread
        links = []
        if tracing.PREVIOUS_ATTEMPT in message.options:
            previous = tracing.parent_of({tracing.TRACEPARENT: message.options[tracing.PREVIOUS_ATTEMPT]})
            previous_span = trace.get_current_span(previous).get_span_context()
            if previous_span.is_valid:
                links.append(trace.Link(previous_span, {"job.link": "previous attempt"}))
        queue = q_name(message.queue_name)
        span = tracing.tracer().start_span(
            f"run {message.actor_name}",
            context=tracing.parent_of(message.options),
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={
                "job.id": message.message_id,
                "job.actor": message.actor_name,
                "job.queue": queue,
                "job.attempt": int(message.options.get("retries", 0)) + 1,
                "job.run": int(message.options.get("job_run", 0)),
                "messaging.system": "rabbitmq",
                "messaging.destination.name": queue,
                "messaging.message.id": message.message_id,
            },
        )
        token = context.attach(trace.set_span_in_context(span))
        self._local.attempt = _Attempt(message.message_id, span, token)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if not tracing.is_on():
            return
        if exception is None:
            outcome = AttemptOutcome.COMPLETED
        elif isinstance(exception, JobCancelled):
            outcome = AttemptOutcome.CANCELLED
        elif isinstance(exception, LeaseLost):
            outcome = AttemptOutcome.LEASE_LOST
        else:
            outcome = AttemptOutcome.FAILED if message.failed else AttemptOutcome.RETRYING
        self._end(outcome, exception)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if tracing.is_on():
            self._end(AttemptOutcome.SKIPPED, None)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        tracing.flush()

    def _end(self, outcome: AttemptOutcome, exception: BaseException | None) -> None:
        attempt: _Attempt | None = getattr(self._local, "attempt", None)
        if attempt is None:
            return  # skipped before this middleware's "before" ran (paused, rate limited): no span was opened
        self._local.attempt = None
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        attempt.span.set_attribute("job.outcome", outcome.value)
        if exception is not None and outcome is not AttemptOutcome.CANCELLED:
            # Redacted as the record's failedReason and traceback are (not the SDK's record_exception, which is not):
            # spans leave for a collector that may keep them longer and show them to more people.
            attempt.span.add_event(
                "exception",
                {
                    "exception.type": type(exception).__name__,
                    "exception.message": describe(exception),
                    "exception.stacktrace": stored_traceback(exception),
                },
            )
            attempt.span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
        attempt.span.end()
        context.detach(attempt.token)  # type: ignore[arg-type]
