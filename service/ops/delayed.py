"""A queue's delayed jobs (delays, and retries waiting for their time): list them, run them now, or cancel them.

The list comes from the job store, not RabbitMQ: a running worker holds every delayed message of its queues unacked
in memory until it is due, so `<queue>.DQ` reads empty while jobs wait, and a message cannot be taken out of a
worker's hands. The store's `delayed` index has each of them with its record, which says when it is due (`dueAt`,
written with the "delayed" transition, service/worker/middleware/status.py).

"Run now" publishes a copy of the job's message without the delay, under the same job id, run and retry, confirmed by
RabbitMQ before it answers. The job then runs once: whichever copy starts first takes it ("active"), and the other is
skipped when it arrives, because a job's state never goes backwards (service/store/lua/transition.lua): the job is
final, or on a later retry, or held under a live lease. Nothing is taken away, so nothing can be lost. "Cancel" is the
store's cancel of a waiting job: the delayed copy, when due, finds the job cancelled and is skipped.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import dramatiq

from service.domain.clock import now_ms
from service.domain.states import BROKER_PRIORITY, JobState, Priority
from service.ops.jobs import Jobs, UnknownActor, UnknownQueue
from service.ops.unavailable import broker_call, store_call
from service.store.job_store import CancelOutcome

T = TypeVar("T")

#: Jobs read, published or cancelled per round trip.
CHUNK = 200
#: The list sorts by due time among this many of a queue's delayed jobs (each actor's oldest created first, actor by
#: actor); the total is exact, and run now / cancel of all take every one.
LIST_SCAN = 10_000
_LIST_FIELDS = ("jobId", "actor", "state", "run", "retries", "attempts", "dueAt", "createdAt", "lastError")
_COPY_FIELDS = ("actor", "state", "run", "retries", "data", "priority", "delayedOptions", "createdMs")


@dataclass(frozen=True)
class DelayedJob:
    job_id: str
    actor: str
    due_at: str | None  #: ISO 8601 UTC; None for a job delayed before the record kept it
    created_at: str
    run: int  #: 0, then +1 each time the job was retried by hand
    retries: int  #: which retry waits (0: a delay asked for at enqueue)
    attempts: int  #: attempts started so far
    last_error: str | None  #: why the last attempt failed, for a retry


@dataclass(frozen=True)
class DelayedPage:
    queue: str
    total: int  #: delayed jobs of the queue, all of them
    jobs: list[DelayedJob]  #: soonest due first


@dataclass(frozen=True)
class Handled:
    """What a run-now or a cancel did."""

    queue: str
    count: int  #: jobs published to run now / cancelled
    #: not (or no longer) delayed in this queue; for run now also those whose payload or options were too large to
    #: keep in the record (they run when due)
    skipped: int


class DelayedJobs:
    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self.store = jobs.store

    def actors_of(self, queue: str) -> tuple[str, ...]:
        """The actors whose jobs go to `queue`; raises UnknownQueue."""
        if queue not in self.jobs.queue_names():
            raise UnknownQueue(queue)
        return tuple(n for n in self.jobs.actor_names() if self.jobs.actor(n).queue_name == queue)

    def list(self, queue: str, *, limit: int = 100, offset: int = 0) -> DelayedPage:
        """The queue's delayed jobs, soonest due first."""
        ids = self._all_ids(self.actors_of(queue))
        rows: builtins.list[dict[str, str | None]] = []
        for chunk in _chunks(ids[:LIST_SCAN], CHUNK * 5):
            rows += store_call(partial(self.store.fields_of, chunk, _LIST_FIELDS))
        waiting = [_delayed_job(row) for row in rows if row["state"] == JobState.DELAYED.value and row["jobId"]]
        waiting.sort(key=lambda job: (job.due_at or "", job.created_at))
        return DelayedPage(queue, len(ids), waiting[offset : offset + limit])

    def run_now(self, queue: str, job_ids: Sequence[str] | None = None) -> Handled:
        """Run the given delayed jobs of the queue (all when None) now; each once, whatever its delayed copy does."""
        actors = self.actors_of(queue)
        count = skipped = 0
        for chunk in _chunks(self._chosen(actors, job_ids), CHUNK):
            rows = store_call(partial(self.store.fields_of, chunk, _COPY_FIELDS))
            copies = [self._copy(job_id, row, actors) for job_id, row in zip(chunk, rows, strict=True)]
            ready = [(message, row) for message, row in zip(copies, rows, strict=True) if message is not None]
            skipped += len(chunk) - len(ready)
            if not ready:
                continue
            # One AMQP transaction, answered once RabbitMQ has them: only then is a job said to run now.
            broker_call(partial(self.jobs.publisher.publish_batch, [message for message, _ in ready]))
            for message, row in ready:
                # Queued at the same run and retry, so it leaves the delayed list. Refused (harmless) if a copy has
                # already started it; if this write fails, the job is still run once: the copy is published.
                store_call(partial(self._queued, message.message_id, row))
            count += len(ready)
        return Handled(queue, count, skipped)

    def cancel(self, queue: str, job_ids: Sequence[str] | None = None) -> Handled:
        """Cancel the given delayed jobs of the queue (all when None): they never run."""
        actors = self.actors_of(queue)
        count = skipped = 0
        for chunk in _chunks(self._chosen(actors, job_ids), CHUNK):
            rows = store_call(partial(self.store.fields_of, chunk, ("actor", "state")))
            for job_id, row in zip(chunk, rows, strict=True):
                if row["state"] != JobState.DELAYED.value or row["actor"] not in actors:
                    skipped += 1
                    continue
                # waiting_only: a job that started meanwhile is left to run (a cancel here only stops waiting jobs).
                outcome = store_call(partial(self.store.cancel, job_id, waiting_only=True))
                if outcome is CancelOutcome.CANCELLED:
                    count += 1
                else:
                    skipped += 1
        return Handled(queue, count, skipped)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _all_ids(self, actors: Sequence[str]) -> builtins.list[str]:
        return [i for actor in actors for i in store_call(partial(self.store.ids_in_state, actor, JobState.DELAYED))]

    def _chosen(self, actors: Sequence[str], job_ids: Sequence[str] | None) -> builtins.list[str]:
        return self._all_ids(actors) if job_ids is None else list(dict.fromkeys(job_ids))

    def _copy(self, job_id: str, row: dict[str, str | None], actors: Sequence[str]) -> dramatiq.Message[Any] | None:
        """The job's message as its delayed copy has it, minus the delay; None when it cannot or must not be made."""
        if row["state"] != JobState.DELAYED.value or row["actor"] not in actors:
            return None
        try:
            actor = self.jobs.actor(str(row["actor"]))
        except UnknownActor:
            return None
        data = _loads(row["data"])
        if set(data) == {"omitted"}:
            return None  # the record kept no payload (over MAX_PAYLOAD_BYTES): only the delayed copy has it
        if row["delayedOptions"] == "":
            return None  # its options were too large to keep (delayed_fields): only the delayed copy has them
        options = _loads(row["delayedOptions"])
        options["job_run"], options["retries"] = int(row["run"] or 0), int(row["retries"] or 0)
        if "broker_priority" not in options:  # delayed before the record kept its options
            options["broker_priority"] = BROKER_PRIORITY[_priority(row["priority"])]
        return dramatiq.Message(
            queue_name=actor.queue_name,
            actor_name=actor.actor_name,
            args=(),
            kwargs=data,
            options=options,
            message_id=job_id,
            # The sender's time, as the delayed copy has it: age limits and jobs that read it (a report's period) see
            # the same message.
            message_timestamp=int(row["createdMs"] or now_ms()),
        )

    def _queued(self, job_id: str, row: dict[str, str | None]) -> None:
        run, retries = int(row["run"] or 0), int(row["retries"] or 0)
        self.store.transition(
            job_id, JobState.QUEUED, run=run, retries=retries, fields={"dueAt": None, "delayedOptions": None}
        )


def _delayed_job(row: dict[str, str | None]) -> DelayedJob:
    return DelayedJob(
        job_id=str(row["jobId"]),
        actor=str(row["actor"] or ""),
        due_at=row["dueAt"],
        created_at=str(row["createdAt"] or ""),
        run=int(row["run"] or 0),
        retries=int(row["retries"] or 0),
        attempts=int(row["attempts"] or 0),
        last_error=row["lastError"],
    )


def _loads(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _priority(raw: str | None) -> Priority:
    try:
        return Priority(raw or Priority.NORMAL.value)
    except ValueError:
        return Priority.NORMAL


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = ["DelayedJob", "DelayedJobs", "DelayedPage", "Handled", "UnknownQueue"]
