"""What runs: the job (a context variable set by the status middleware, read by progress and logs), and where."""

from __future__ import annotations

import os
import socket
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


def this_process() -> str:
    """ "<host>:<pid>": how job leases, locks and heartbeats name this process. Ask again after a fork."""
    return f"{socket.gethostname()}:{os.getpid()}"
