"""Logging: JSON lines (or console text) carrying the current job's id, actor, queue and attempt."""

from __future__ import annotations

import json
import logging
import os
import re
import select
import sys
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import quote, quote_plus

from dramatiq import Message
from dramatiq.broker import MessageProxy

from service.domain.context import current_job

# user:password@ in URLs, and values of settings whose names say they are secret. The bounded repeats keep the
# scan linear: with `*` a long line without "://" (a big payload in an error) took minutes and froze logging.
_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]{0,30}://)(?P<user>[^:/@\s]{0,256}):(?P<password>[^@/\s]{1,256})@", re.I
)
_SECRETS: set[str] = set()
_ORDERED: tuple[str, ...] = ()  # _SECRETS longest first, replaced whole so a line being redacted never sees it move
#: The longest text the URL pattern matches: a cut inside such a URL hides it from the pattern.
_URL_REACH = 31 + 3 + 256 + 1 + 256 + 1
#: A query parameter whose name says it holds a secret (`?api_token=`, `&password=`): its value, whatever it is, as
#: uvicorn's access log prints it. Bounded name parts keep the scan linear.
_SECRET_QUERY = re.compile(
    r"([?&][^=&\s\"']{0,64}(?:token|password|passwd|secret|signature|key)[^=&\s\"']{0,64}=)[^&\s\"'\\<>]+", re.I
)
#: Uvicorn's loggers, to which it gives plain-text handlers of its own before it imports the app.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")

#: A log line carries at most this many characters of message and as many of traceback; the rest is counted.
MAX_CHARS = 8_000


def register_secret(value: str) -> None:
    """Make sure this value never appears in a log line (tokens, passwords, signing secrets), neither as it is
    nor in the forms a line may carry it in: escaped inside JSON (quotes, backslashes, non-ASCII as \\uXXXX, and
    JSON inside JSON), inside a Python repr, or percent-encoded in a URL (path or query)."""
    if not value or len(value) < 4:
        return
    escaped = json.dumps(value)[1:-1]
    forms = {
        value,
        escaped,
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(escaped)[1:-1],
        repr(value)[1:-1],
        quote(value, safe=""),
        quote_plus(value),
    }
    global _ORDERED
    _SECRETS.update(forms)
    # Longest first: a secret inside another must not be replaced first and leave the rest of the longer visible.
    _ORDERED = tuple(sorted(_SECRETS, key=len, reverse=True))


def shorten(text: str, limit: int = MAX_CHARS) -> str:
    """Redacted, then at most `limit` characters: a cut never leaves part of a secret visible.

    A long text is first cut to a little more than the limit, which bounds the work. That cut may split a secret,
    which redaction then cannot recognise: such a piece lies within the redacted text's last `reach` characters (the
    longest secret, or URL with a password), so the final cut stays before them, and when secrets replaced earlier
    shrank the text that much, a longer part is redacted instead. (Cutting the redacted text at `limit` alone was
    not enough: the shrinking pulled the piece into view.)"""
    if len(text) <= limit:
        return redact(text)
    reach = max(_URL_REACH, *(len(secret) for secret in _SECRETS)) if _SECRETS else _URL_REACH
    size = limit + reach + 1024
    while True:
        head = redact(text[:size])
        if size >= len(text) and len(head) <= limit:
            return head
        if size >= len(text) or len(head) - reach >= limit:
            return f"{head[:limit]}... ({len(text) - limit} more characters)"
        size *= 4


def shorten_tail(text: str, limit: int = MAX_CHARS) -> str:
    """Redacted, then at most its last `limit` characters (the end of a traceback says what failed).

    Only a window a little longer than the limit is redacted, which bounds the work. Its first cut may split a
    secret (or a URL with a password), leaving a piece redaction cannot recognise; that piece lies within the
    window's first `reach` characters, where replacements further on cannot move it, so those are dropped."""
    if len(text) <= limit:
        return redact(text)
    reach = max([_URL_REACH, *(len(secret) for secret in _ORDERED)])
    return redact(text[-(limit + reach) :])[reach:][-limit:]


def _without_payload(value: object) -> object:
    """Dramatiq logs messages with their arguments; a job's payload may be personal or secret, so name it only."""
    if isinstance(value, (Message, MessageProxy)):
        return f"{value.actor_name}({value.message_id})"
    return value


def redact(text: str) -> str:
    if "://" in text:  # every URL with a password has it; most lines have none, and the scan is costly
        text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    if "=" in text:
        text = _SECRET_QUERY.sub(lambda m: f"{m[1]}***", text)
    for secret in _ORDERED:
        text = text.replace(secret, "***")
    return text


class JobContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_without_payload(arg) for arg in record.args)
        job = current_job.get()
        if job is not None:
            record.job_id = job.job_id
            record.actor = job.actor
            record.queue = job.queue
            record.attempt = job.attempt
        return True


_JOB_FIELDS = ("job_id", "actor", "queue", "attempt", "event")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": shorten(record.getMessage()),
            "process": record.process,
        }
        for name in _JOB_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exc"] = shorten(self.formatException(record.exc_info))
        return redact(json.dumps(line, default=str))


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        job = ""
        if hasattr(record, "job_id"):
            job = f" [{getattr(record, 'actor', '')}:{record.job_id} attempt {getattr(record, 'attempt', '')}]"
        stamp = self.formatTime(record, "%H:%M:%S")
        text = f"{stamp} {record.levelname:<7} {record.name}{job}: {shorten(record.getMessage())}"
        if record.exc_info:
            text += "\n" + shorten(self.formatException(record.exc_info))
        return redact(text)


class DirectLines:
    """A stream for the log handler of a `dramatiq` worker process: each line goes straight to the process's own
    stderr (file descriptor 2, which it shares with its parent) instead of through Dramatiq's pipe to the parent,
    which copied every line again (two processes' CPU for each `completed` line).

    A write of at most PIPE_BUF bytes to a pipe, or any write to a file opened for appending, is never interleaved
    with another process's, so such lines stay whole. A longer line (a traceback) still goes through the pipe,
    where the parent keeps it whole.
    """

    def __init__(self, fallback: TextIO, fd: int = 2) -> None:
        self.fallback = fallback
        self.fd = fd

    def write(self, text: str) -> int:
        data = text.encode("utf-8", errors="replace")
        if len(data) > select.PIPE_BUF:
            self.fallback.write(text)
            self.fallback.flush()
            return len(text)
        while data:
            data = data[os.write(self.fd, data) :]
        return len(text)

    def flush(self) -> None:
        pass


def write_lines_directly() -> None:
    """In a worker process: send this module's log lines straight to stderr (see DirectLines)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler.stream, DirectLines):
            handler.setStream(DirectLines(handler.stream))


def configure(level: str, fmt: str) -> None:
    """Install one handler on the root logger; Dramatiq's and periodiq's own loggers flow through it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(JobContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("pika", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def adopt_uvicorn_loggers() -> None:
    """In the web process: uvicorn's own lines (access log, errors with their tracebacks) go through the root handler,
    so they are redacted and, with LOG_FORMAT=json, one JSON line each. Uvicorn keeps setting their levels; a logger
    it silenced (`--no-access-log`: no handler, no propagation) stays silent."""
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if logger.handlers:
            logger.handlers.clear()
            logger.propagate = True
