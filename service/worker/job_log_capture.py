"""In a worker process: keep the lines each job logs, and write them to Redis in batches off the job's thread.

A job's thread only appends a small tuple to memory (nothing at all when no job runs on it); a writer thread formats,
redacts and writes every job's new lines in one pipeline every `flush_s`, or at once when a job ends. When Redis is
away the writer waits on it, never the job: lines beyond what memory holds are dropped and counted."""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis

from service import logs
from service.background import BackgroundLoop
from service.domain.context import current_job
from service.store.log_store import JobLogStore

logger = logging.getLogger(__name__)

#: What logging's exc_info holds once a record was made.
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
#: The framework's own lines (Dramatiq's, this service's: "job completed", retries) are in the process log; a job keeps
#: what its own code (and the libraries it calls) logged, so a job that logs nothing costs nothing here.
FRAMEWORK_LOGGERS = ("service.", "dramatiq", "periodiq", "pika")
#: Jobs with lines waiting at once; beyond them (Redis away while many jobs log) a new job's lines are dropped.
MAX_JOBS_WAITING = 1000


@dataclass
class Pending:
    """One job's lines not yet written: raw pieces, formatted by the writer thread."""

    lines: deque[tuple[str, float, str, str, int, str, ExcInfo | None]]
    dropped: int = 0


@dataclass
class CaptureStats:
    written: int = 0  #: lines written to Redis
    dropped: int = 0  #: lines lost: the job's buffer was full, too many jobs waited, or Redis refused the write
    flushes: int = 0  #: pipelines sent


class JobLogCapture(logging.Handler):
    """A root-logger handler: records logged while a job runs on this thread are kept for that job."""

    def __init__(self, store: JobLogStore, *, keep: int, line_chars: int, flush_s: float) -> None:
        super().__init__()
        self.store = store
        self.keep = keep
        self.line_chars = line_chars
        self.flush_s = flush_s
        self.stats = CaptureStats()
        #: Line ids are unique within a job across processes and attempts: a follower reads "after" one of them.
        self._prefix = f"{secrets.token_hex(3)}{os.getpid():x}"
        self._seq = itertools.count(1)
        self._pending: dict[str, Pending] = {}
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._writer = BackgroundLoop("job-logs", self._write_forever, wake=self._wake)
        self._warned = False

    # -- on the job's thread ---------------------------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:
        # Overridden (no handler lock, no filters): the one question is whether a job runs on this thread.
        job = current_job.get()
        if job is None or record.name.startswith(FRAMEWORK_LOGGERS):
            return False
        try:
            message = record.getMessage()  # now: the arguments may change once the call returns
        except Exception:  # a bad format string: logging never raises into the caller, and neither does this
            self.stats.dropped += 1
            return False
        line = (
            f"{self._prefix}-{next(self._seq):x}",
            record.created,
            record.levelname,
            record.name,
            job.attempt,
            message,
            record.exc_info if record.exc_info and record.exc_info[0] is not None else None,
        )
        with self._mutex:
            pending = self._pending.get(job.job_id)
            if pending is None:
                if len(self._pending) >= MAX_JOBS_WAITING:
                    self.stats.dropped += 1
                    return False
                pending = self._pending[job.job_id] = Pending(deque(maxlen=self.keep))
            if len(pending.lines) == self.keep:
                pending.dropped += 1  # the oldest goes: only the last `keep` are kept anyway
            pending.lines.append(line)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # handle() does the work
        self.handle(record)

    def job_ended(self, job_id: str) -> None:
        """The job's last lines go out now rather than at the next tick (a follower stops at the job's end)."""
        if job_id in self._pending:
            self._wake.set()

    # -- the writer thread -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._writer.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is waiting, then stop the writer."""
        self._writer.stop(timeout_s)

    def _write_forever(self) -> None:
        stopping = self._writer.stopping
        while not stopping.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self._flush_safely()
        self._flush_safely()

    def _flush_safely(self) -> None:
        try:
            self.flush()
        except Exception:  # a bug here must not end the writer, and with it every later job's lines
            logger.exception("job log lines not written")  # this thread runs no job: not captured again

    def flush(self) -> None:
        with self._mutex:
            if not self._pending:
                return
            taken, self._pending = self._pending, {}
        batches = {job_id: [self._format(line) for line in pending.lines] for job_id, pending in taken.items()}
        count = sum(len(lines) for lines in batches.values())
        self.stats.dropped += sum(pending.dropped for pending in taken.values())
        try:
            self.store.append(batches)
        except redis.RedisError as error:
            self.stats.dropped += count
            if not self._warned:  # once per outage: the process log would otherwise fill with these
                logger.warning("job log lines not written, dropped: job store unreachable (%s)", error)
                self._warned = True
            return
        self._warned = False
        self.stats.written += count
        self.stats.flushes += 1

    def _format(self, line: tuple[str, float, str, str, int, str, ExcInfo | None]) -> str:
        line_id, created, level, name, attempt, message, exc = line
        text = logs.shorten(message, self.line_chars if exc is None else self.line_chars // 2)
        if exc is not None:  # a traceback's end says what failed: its last characters are kept
            trace = "".join(traceback.format_exception(*exc)).rstrip()
            text += "\n" + logs.shorten_tail(trace, max(self.line_chars - len(text) - 1, 1))
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"
        entry: dict[str, Any] = {
            "id": line_id,
            "at": at,
            "level": level.lower(),
            "logger": name,
            "attempt": attempt,
            "message": text,
        }
        return json.dumps(entry)  # the message was redacted whole, before any escaping
