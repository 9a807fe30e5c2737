"""The service layer for a job's own log lines: a page of them after a given line, and following them to the end."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

from service.domain.states import FINAL_STATES, JobState
from service.ops.jobs import JobNotFound
from service.ops.unavailable import store_call
from service.store.log_store import JobLogStore

#: Lines read from the end first when following: more new lines than this between two reads cost a second read.
TAIL = 50


@dataclass(frozen=True)
class LogLine:
    id: str  #: unique within the job; pass it as `after` to get only the lines that follow
    at: str  #: ISO 8601, UTC
    level: str
    logger: str
    attempt: int
    message: str  #: redacted, at most JOB_LOG_LINE_CHARS (and a note of how much was cut)

    @classmethod
    def parse(cls, raw: str) -> LogLine:
        entry = json.loads(raw)
        return cls(
            id=str(entry["id"]),
            at=str(entry["at"]),
            level=str(entry["level"]),
            logger=str(entry["logger"]),
            attempt=int(entry["attempt"]),
            message=str(entry["message"]),
        )

    def as_json(self) -> dict[str, str | int]:
        return {
            "id": self.id,
            "at": self.at,
            "level": self.level,
            "logger": self.logger,
            "attempt": self.attempt,
            "message": self.message,
        }


@dataclass(frozen=True)
class LogPage:
    job_id: str
    state: JobState
    lines: list[LogLine]

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


class JobLogs:
    def __init__(self, store: JobLogStore, *, settle_s: float) -> None:
        self.store = store
        #: How long after a job's end its last lines may still be on their way (the workers' flush interval, twice).
        self.settle_s = settle_s

    def page(self, job_id: str, after: str | None = None) -> LogPage:
        """The job's kept lines (the last JOB_LOG_LINES), or only those after the line `after`; an id no longer kept
        (trimmed away) gives them all. Raises JobNotFound."""
        stored = store_call(lambda: self.store.tail(job_id, TAIL if after else 0))
        if stored.state is None:
            raise JobNotFound(job_id)
        state = JobState(stored.state)
        lines = [LogLine.parse(raw) for raw in stored.lines]
        if after:
            seen = [i for i, line in enumerate(lines) if line.id == after]
            if seen:
                lines = lines[seen[0] + 1 :]
            else:
                stored = store_call(lambda: self.store.tail(job_id, 0))
                lines = [LogLine.parse(raw) for raw in stored.lines]
                ids = [line.id for line in lines]
                lines = lines[ids.index(after) + 1 :] if after in ids else lines
        return LogPage(job_id, state, lines)

    def follow(self, job_id: str, *, poll_s: float = 0.5, timeout_s: float | None = None) -> Iterator[LogLine]:
        """Every kept line, then each new one as it comes, until the job has ended (and its last lines settled) or
        `timeout_s` passed. Raises JobNotFound."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        after: str | None = None
        ended_at: float | None = None
        while True:
            page = self.page(job_id, after)
            for line in page.lines:
                yield line
                after = line.id
            if page.final:
                if ended_at is None:
                    ended_at = time.monotonic()  # read once more after the workers' last flush
                elif time.monotonic() - ended_at >= self.settle_s:
                    return
            else:
                ended_at = None  # retried meanwhile
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(min(poll_s, self.settle_s) if ended_at is not None else poll_s)
