"""The relay's hand-built publish frames are byte for byte what pika itself would send."""

from __future__ import annotations

import pika
import pika.frame
import pika.spec
import pytest

from service.rabbit.amqp_frames import publish_frames


def pikas_frames(channel: int, exchange: str, key: str, body: bytes, frame_max: int, **props: object) -> bytes:
    properties = pika.BasicProperties(content_type="application/json", delivery_mode=2, **props)  # type: ignore[arg-type]
    frames = [
        pika.frame.Method(channel, pika.spec.Basic.Publish(exchange=exchange, routing_key=key)).marshal(),
        pika.frame.Header(channel, len(body), properties).marshal(),
    ]
    room = frame_max - 8
    frames += [pika.frame.Body(channel, body[i : i + room]).marshal() for i in range(0, len(body), room)]
    return b"".join(frames)


@pytest.mark.parametrize(
    ("body", "frame_max"),
    [
        (b'{"eventId": 7, "state": "completed"}', 131_072),
        (b'{"error": "' + "é ✓ ".encode() * 3000 + b'"}', 4096),  # split over several body frames
        (b"", 131_072),
    ],
)
def test_the_frames_match_pikas(body: bytes, frame_max: int) -> None:
    ours = publish_frames(
        3, "jobs.events", "send_email.completed", body,
        message_id="12345", message_type="completed", timestamp=1_764_000_000, frame_max=frame_max,
    )  # fmt: skip
    theirs = pikas_frames(
        3, "jobs.events", "send_email.completed", body, frame_max,
        message_id="12345", type="completed", timestamp=1_764_000_000,
    )  # fmt: skip
    assert ours == theirs


def test_a_routing_key_too_long_for_amqp_is_refused() -> None:
    with pytest.raises(ValueError, match="255"):
        publish_frames(
            1, "jobs.events", "a" * 256, b"{}", message_id="1", message_type="x", timestamp=0, frame_max=4096
        )
