"""Log lines stay short, fast to write and free of payloads and secrets, whatever a job was sent."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import quote

import dramatiq

from service import logs


def _format(message: str, *args: object) -> str:
    record = logging.LogRecord("dramatiq.worker", logging.WARNING, __file__, 1, message, args, None)
    logs.JobContextFilter().filter(record)
    return logs.ConsoleFormatter().format(record)


def test_a_huge_log_message_is_cut_short_quickly() -> None:
    started = time.monotonic()
    line = _format("failed: %s", "x" * 10_000_000)
    assert time.monotonic() - started < 2
    assert len(line) < logs.MAX_CHARS + 200
    assert line.endswith(f"... ({10_000_008 - logs.MAX_CHARS} more characters)")


def test_a_long_line_without_urls_is_redacted_in_linear_time() -> None:
    started = time.monotonic()
    logs.redact("x" * 200_000)
    assert time.monotonic() - started < 2


def test_dramatiq_messages_are_logged_by_actor_and_id_without_their_payload() -> None:
    message = dramatiq.Message(
        queue_name="q", actor_name="send_email", args=(), kwargs={"to": "someone@example.com"}, options={}
    )
    line = _format("Failed to process message %s with unhandled exception.", message)
    assert f"send_email({message.message_id})" in line
    assert "someone@example.com" not in line


def test_secrets_and_url_passwords_are_redacted_even_at_the_cut() -> None:
    logs.register_secret("tok-3f9a1c77e2")
    text = "y" * (logs.MAX_CHARS - 5) + "tok-3f9a1c77e2 amqp://guest:hunter22@host/"
    line = _format("%s", text)
    assert "tok-3f9a1c77e2" not in line
    assert "tok-3" not in line
    assert "hunter22" not in _format("connecting to amqp://guest:hunter22@host:5672/v")


def test_a_secret_that_json_escapes_is_redacted_in_every_written_form() -> None:
    secret = 'tok"q\\u-\u00e9-5be1c0'
    logs.register_secret(secret)
    forms = [
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(json.dumps(secret))[1:-1],
        repr(secret)[1:-1],
        quote(secret, safe=""),
    ]
    quoted = f"client answered {json.dumps({'token': secret})} and {secret!r} and ?t={quote(secret, safe='')}"
    record = logging.LogRecord("upstream", logging.WARNING, __file__, 1, "%s", (quoted,), None)
    for line in (logs.JsonFormatter().format(record), logs.ConsoleFormatter().format(record)):
        for form in forms:
            assert form not in line, (form, line)
        assert "5be1c0" not in line and "***" in line
    assert json.loads(logs.JsonFormatter().format(record))["msg"].startswith('client answered {"token": "***"}')


def test_a_secret_inside_a_longer_one_does_not_leave_the_longer_ones_rest_visible() -> None:
    logs.register_secret("abcd-short")
    logs.register_secret("abcd-short-and-longer-9f3")
    assert logs.redact("x abcd-short-and-longer-9f3 y") == "x *** y"


def test_a_traceback_cut_to_its_end_never_shows_part_of_a_secret() -> None:
    secret = "sek-7e1d0a-9c4b2f-0d5e8a"
    logs.register_secret(secret)
    limit = 5000
    # Wherever the cut lands inside the first copy, the 200 copies after it shrink by 4,200 characters once
    # redacted, which pulls any piece left at the cut into the last `limit` characters unless it is dropped.
    for filler in range(0, 2000, 7):
        text = "x" * 50 + secret + secret * 200 + "y" * filler
        line = logs.shorten_tail(text, limit)
        assert len(line) <= limit
        for piece in ("7e1d0a", "9c4b2f", "0d5e8a"):
            assert piece not in line, (filler, line[:80])
    assert logs.shorten_tail("short " + secret) == "short ***"
