"""What a job's record holds, taken from its Dramatiq message: whoever records a job builds its fields here (the API
and the CLI as they publish, the worker for a message another service sent, the scheduler for a tick)."""

from __future__ import annotations

import json
from typing import Any

from dramatiq.common import q_name

from service import tracing
from service.domain import envelope, flow_control
from service.domain.clock import iso_from_ms
from service.domain.errors import ResultTooLarge
from service.domain.states import BROKER_PRIORITY

_PRIORITY_NAMES = {number: name.value for name, number in BROKER_PRIORITY.items()}

#: Message option: the fencing token of the attempt that published this message (a retry), checked by its "active"
#: (service/worker/middleware/lease.py).
PARENT_ATTEMPT = "parent_attempt"
#: Options a "run now" copy must not take from the delayed message: the delay itself, what the record already keeps
#: (run, retry, last error, traceback) and the publishing attempt's fencing token (service/ops/delayed.py).
_NOT_COPIED = frozenset({"eta", "job_run", "retries", "last_error", "traceback", PARENT_ATTEMPT})


def run_of(message: Any) -> int:
    """Which run of the job this message is: 0 at first, +1 each time it is retried by hand."""
    return int(message.options.get("job_run", 0))


def retries_of(message: Any) -> int:
    return int(message.options.get("retries", 0))


def record_fields(message: Any, max_payload_bytes: int) -> dict[str, Any]:
    """What a new record holds, taken from the message alone (so a foreign sender's job can be recorded too)."""
    created = envelope.created_ms(message)
    fields: dict[str, Any] = {
        "jobId": message.message_id,
        "actor": message.actor_name,
        "queue": q_name(message.queue_name),
        "data": envelope.recordable_json(message, max_payload_bytes),
        "priority": _PRIORITY_NAMES.get(message.options.get("broker_priority", 5), "normal"),
        "createdMs": created,
        "createdAt": iso_from_ms(created),
    }
    if message.options.get("key") is not None:  # job_key.OPTION, checked by whoever built the message
        fields["key"] = str(message.options["key"])
    if message.options.get(flow_control.CLAIM):  # the singleton claim it holds: freed as the job ends
        fields["singleton"] = str(message.options[flow_control.CLAIM])
    if message.options.get("idempotency_key"):
        fields["idempotencyKey"] = message.options["idempotency_key"]
    trace_id = tracing.trace_id_of(message.options)
    if trace_id:
        fields["traceId"] = trace_id
    return fields


def delayed_fields(message: Any, max_bytes: int) -> dict[str, Any]:
    """What a delayed job's record keeps besides its state: when it is due (`dueAt`), and the message's other options
    (`delayedOptions`: a pipeline's next step, a per-message time limit, ...): "run now" publishes a faithful copy.
    Options over `max_bytes` (MAX_PAYLOAD_BYTES) are not kept ("" says so): such a job runs only when due."""
    options = json.dumps({k: v for k, v in message.options.items() if k not in _NOT_COPIED}, default=str)
    fields: dict[str, Any] = {"delayedOptions": options if len(options) <= max_bytes else ""}
    eta = message.options.get("eta")
    if isinstance(eta, int) and not isinstance(eta, bool):
        fields["dueAt"] = iso_from_ms(eta)
    return fields


def to_json(value: Any, max_bytes: int | None = None) -> str:
    """A result as the record stores it. Over `max_bytes` (MAX_RESULT_BYTES) it raises ResultTooLarge: the job
    itself checks (service.worker.typed_actor), so the result fails the job like any error and is never stored."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    text = json.dumps(value, default=str)
    if max_bytes is not None and len(text) * 4 > max_bytes:  # a character is at most 4 bytes: most texts stop here
        size = len(text.encode())
        if size > max_bytes:
            raise ResultTooLarge(f"result is {size} bytes, over MAX_RESULT_BYTES={max_bytes}")
    return text
