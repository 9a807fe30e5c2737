"""Checks on a message's envelope before a worker trusts it: other services may publish anything to a queue."""

from __future__ import annotations

import json
from typing import Any

from service.domain.clock import now_ms


def payload_bytes(message: Any) -> int:
    """Size of the payload as compact JSON: what the API would have measured as the request body."""
    payload = message.kwargs if isinstance(message.kwargs, dict) else {}
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def problem(message: Any, max_payload_bytes: int) -> str | None:
    """Why this message cannot be run as it stands, or None. The reason ends up in the job's failedReason."""
    if message.kwargs is not None and not isinstance(message.kwargs, dict):
        return f"invalid message: kwargs must be an object, not {type(message.kwargs).__name__}"
    if not isinstance(message.options, dict):
        return f"invalid message: options must be an object, not {type(message.options).__name__}"
    size = payload_bytes(message)
    if size > max_payload_bytes:
        return f"payload too large: {size} bytes, the limit is {max_payload_bytes} (MAX_PAYLOAD_BYTES)"
    return None


def created_ms(message: Any) -> int:
    """The sender's timestamp when it is a plausible one; a garbled one must not stop the job being recorded."""
    stamp = message.message_timestamp
    if isinstance(stamp, int) and not isinstance(stamp, bool) and 0 < stamp < 10**14:
        return stamp
    return now_ms()


def recordable_json(message: Any, max_payload_bytes: int) -> str:
    """The payload as the record keeps it, as JSON (encoded once: it is measured and stored as the same text): never
    more than the limit, whatever was published."""
    if message.args:
        data: dict[str, Any] = {"args": list(message.args)}
    elif isinstance(message.kwargs, dict):
        data = dict(message.kwargs)
    else:
        data = {}
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
    size = len(text.encode())
    if size > max_payload_bytes:
        return json.dumps({"omitted": f"{size} bytes, over the {max_payload_bytes}-byte limit"})
    return text
