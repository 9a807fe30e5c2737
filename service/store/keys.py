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


def job_logs(job_id: str) -> str:
    """The last lines a job's own code logged (a list of JSON lines); deleted with the record (common.lua)."""
    return f"{PREFIX}logs:{job_id}"


def idempotency(key: str) -> str:
    return f"{PREFIX}idem:{key}"


def hook_id(webhook_id: str) -> str:
    """The actor an inbound hook's webhook-id was first sent to."""
    return f"{PREFIX}hook-id:{webhook_id}"


def paused(queue: str) -> str:
    return f"{PREFIX}paused:{queue}"


def rate_window(name: str, window: int) -> str:
    return f"{PREFIX}rate:{name}:{window}"


def throughput(state: str, minute: int) -> str:
    """Jobs that reached `state` (completed or failed) in one minute (minutes since the epoch); expires after ~2 h."""
    return f"{PREFIX}throughput:{state}:{minute}"


def worker(worker_id: str) -> str:
    """One worker process's heartbeat; it expires when the process stops beating."""
    return f"{PREFIX}worker:{worker_id}"


def schedule(actor: str) -> str:
    """Hash of a schedule's last tick, last run and skipped ticks."""
    return f"{PREFIX}schedule:{actor}"


def schedule_tick(actor: str, tick: str) -> str:
    """Claimed by the first scheduler to send (or skip) this tick; holds the job id."""
    return f"{PREFIX}schedule:{actor}:tick:{tick}"


def schedule_unpublished() -> str:
    """Sorted set of ticks claimed but not yet confirmed published, scored by claim time (Redis clock, ms)."""
    return f"{PREFIX}schedule-unpublished"


ACTORS = f"{PREFIX}actors"
#: Sorted set of worker ids scored by when their heartbeat expires (ms); lets readers skip a SCAN.
WORKERS = f"{PREFIX}workers"


def once(kind: str, job_id: str) -> str:
    """Marks a side effect (an email handed to SMTP) as done for a job, so a redelivery does not repeat it."""
    return f"{PREFIX}once:{kind}:{job_id}"


def lease(job_id: str) -> str:
    """Kept alive by the worker running the job; gone means no live worker holds it."""
    return f"{PREFIX}lease:{job_id}"


def semaphore(name: str) -> str:
    return f"{PREFIX}sem:{name}"


def dead_requeue(queue: str) -> str:
    """The progress of the latest "requeue all" of a queue's dead letters (a hash), and its holder's lock."""
    return f"{PREFIX}dead-requeue:{queue}"


def dead_sent(job_id: str) -> str:
    """The run of a job whose copy a dead-letter requeue published (confirmed) before acknowledging its dead letter."""
    return f"{PREFIX}dead-sent:{job_id}"


def lock(name: str) -> str:
    return f"{PREFIX}lock:{name}"


#: The lifecycle-event stream, capped at EVENTS_STREAM_MAXLEN: one entry per state change, added by the Lua script
#: that makes the change (common.lua builds the same name from the prefix).
EVENTS = f"{PREFIX}events"


def events_export_group(exchange: str) -> str:
    """The consumer group through which the RabbitMQ export reads the stream: one per exchange."""
    return f"export:{exchange}"


def events_export_lease(exchange: str) -> str:
    """Held by the one export relay that may publish to `exchange` (a token; it expires unless renewed)."""
    return f"{PREFIX}events:export:{exchange}:lease"


#: Counters for /metrics, written by the Lua scripts: jobs created per "queue|actor", state entries per
#: "queue|actor|state", attempt run times per "queue|actor|le" (plus "|sum" and "|count").
METRICS_CREATED = f"{PREFIX}metrics:created"
METRICS_ENTERED = f"{PREFIX}metrics:entered"
METRICS_RUNS = f"{PREFIX}metrics:runs"
