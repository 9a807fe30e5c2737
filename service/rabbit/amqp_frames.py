"""AMQP 0-9-1 frames of a persistent `basic.publish`, built in a few struct calls.

The event relay publishes every state change of every job: three messages a job. pika builds each one through its
generic method, property and frame classes, which cost several times what the bytes themselves take to pack, and
it did so on the worker's own threads. These are the same bytes (tests/service/test_amqp_frames.py compares them
with pika's), for the one shape the relay sends: a JSON body with content type, persistent delivery mode,
message id, type and timestamp.
"""

from __future__ import annotations

import struct

FRAME_METHOD, FRAME_HEADER, FRAME_BODY = 1, 2, 3
FRAME_END = b"\xce"
FRAME_OVERHEAD = 8  #: type (1), channel (2), size (4) and the end octet (1)
BASIC_CLASS, BASIC_PUBLISH = 60, 40
PERSISTENT = 2
#: Which properties follow, in the order AMQP lays them out: content type, delivery mode, message id, timestamp, type.
PROPERTY_FLAGS = 0x8000 | 0x1000 | 0x0080 | 0x0040 | 0x0020


def _short_string(value: bytes) -> bytes:
    if len(value) > 255:
        raise ValueError(f"AMQP short string over 255 bytes: {value[:40]!r}...")
    return bytes((len(value),)) + value


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + FRAME_END


def publish_frames(
    channel: int,
    exchange: str,
    routing_key: str,
    body: bytes,
    *,
    message_id: str,
    message_type: str,
    timestamp: int,
    frame_max: int,
    content_type: str = "application/json",
) -> bytes:
    """Method, content header and body frames (the body split to fit `frame_max`) of one publish."""
    method = (
        struct.pack(">HHH", BASIC_CLASS, BASIC_PUBLISH, 0)  # the last: reserved "ticket"
        + _short_string(exchange.encode())
        + _short_string(routing_key.encode())
        + b"\x00"  # neither mandatory nor immediate
    )
    properties = (
        _short_string(content_type.encode())
        + bytes((PERSISTENT,))
        + _short_string(message_id.encode())
        + struct.pack(">Q", timestamp)
        + _short_string(message_type.encode())
    )
    header = struct.pack(">HHQH", BASIC_CLASS, 0, len(body), PROPERTY_FLAGS) + properties
    frames = [_frame(FRAME_METHOD, channel, method), _frame(FRAME_HEADER, channel, header)]
    room = frame_max - FRAME_OVERHEAD
    frames += [_frame(FRAME_BODY, channel, body[start : start + room]) for start in range(0, len(body), room)]
    return b"".join(frames)
