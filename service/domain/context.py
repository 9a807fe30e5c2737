"""What the running job is: a context variable set by the status middleware, read by progress and logs."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class JobContext:
    job_id: str
    actor: str
    queue: str
    attempt: int
    last_progress_write: float = 0.0
    pending: tuple[int, str | None] | None = field(default=None)


current_job: ContextVar[JobContext | None] = ContextVar("current_job", default=None)
