"""Every Redis key the service writes, in one place."""

from __future__ import annotations

PREFIX = "jobs:"


def job(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def history(job_id: str) -> str:
    return f"{PREFIX}history:{job_id}"


def index(actor: str | None = None, state: str | None = None) -> str:
    """Sorted set of job ids by creation time, optionally narrowed to an actor and/or a state."""
    key = f"{PREFIX}index"
    if actor:
        key += f":actor:{actor}"
    if state:
        key += f":state:{state}"
    return key


def idempotency(key: str) -> str:
    return f"{PREFIX}idem:{key}"


def paused(queue: str) -> str:
    return f"{PREFIX}paused:{queue}"


def rate_window(name: str, window: int) -> str:
    return f"{PREFIX}rate:{name}:{window}"


ACTORS = f"{PREFIX}actors"


def once(kind: str, job_id: str) -> str:
    """Marks a side effect (an email handed to SMTP) as done for a job, so a redelivery does not repeat it."""
    return f"{PREFIX}once:{kind}:{job_id}"


def lease(job_id: str) -> str:
    """Kept alive by the worker running the job; gone means no live worker holds it."""
    return f"{PREFIX}lease:{job_id}"


def semaphore(name: str) -> str:
    return f"{PREFIX}sem:{name}"


def lock(name: str) -> str:
    return f"{PREFIX}lock:{name}"
