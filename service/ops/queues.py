"""The service layer for queues, every operation on them: figures, pause and resume, purge, re-running failed jobs,
and (as parts of its own) dead letters and delayed jobs. The API, the CLI and the dashboard all call this one."""

from __future__ import annotations

from dataclasses import dataclass

from service.domain.states import JobState
from service.ops.dead_jobs import DeadJobs
from service.ops.delayed import DelayedJobs
from service.ops.jobs import Conflict, Jobs, UnknownActor
from service.ops.unavailable import broker_call, store_call
from service.rabbit import queue_figures
from service.rabbit.link import RabbitLink
from service.rabbit.queue_figures import Depth
from service.store.job_store import CancelOutcome, JobStore
from service.store.pauses import PauseFlags


@dataclass(frozen=True)
class QueueFigures:
    """One queue: `waiting`, `delayed` and `dead` from RabbitMQ; `active`, `completed`, `failed` from the store."""

    name: str
    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    paused: bool
    dead: int


@dataclass(frozen=True)
class Purged:
    queue: str
    messages: int  #: messages removed from the queue and its delay queue
    cancelled: int  #: waiting job records marked cancelled


@dataclass(frozen=True)
class Retried:
    retried: list[str]
    skipped: int  #: changed state meanwhile, or belongs to an actor this code does not know


@dataclass(frozen=True, eq=False)
class Queues:
    """One per process, built by the composition root. A queue is known when a declared job uses it; every
    operation on one that is not raises UnknownQueue."""

    jobs: Jobs
    store: JobStore
    link: RabbitLink
    pauses: PauseFlags
    #: A queue's dead letters: a page of them, requeue, delete (service/ops/dead_jobs.py).
    dead: DeadJobs
    #: A queue's delayed jobs: list, run now, cancel (service/ops/delayed.py).
    delayed: DelayedJobs

    def names(self) -> list[str]:
        return self.jobs.queue_names()

    def check(self, name: str) -> str:
        """The name, when a declared job uses that queue; raises UnknownQueue."""
        self.jobs.actors_of(name)
        return name

    # -- figures ---------------------------------------------------------------------------------------------

    def figures(self) -> list[QueueFigures]:
        """Every queue, in name order."""
        return [self._figures(name) for name in self.names()]

    def depths(self) -> dict[str, Depth]:
        """Every queue's depth in RabbitMQ, all read before any is returned."""
        return broker_call(lambda: {name: queue_figures.depth(self.link, name) for name in self.names()})

    def _figures(self, queue: str) -> QueueFigures:
        depth = broker_call(lambda: queue_figures.depth(self.link, queue))
        actors = self.jobs.actors_of(queue)

        def count(state: JobState) -> int:
            return store_call(lambda: sum(self.store.count(actor, state) for actor in actors))

        return QueueFigures(
            name=queue,
            waiting=depth.waiting,
            active=count(JobState.ACTIVE),
            completed=count(JobState.COMPLETED),
            failed=count(JobState.FAILED),
            # A running worker holds delayed messages unacked until they are due, so RabbitMQ's count alone would
            # read 0 while jobs wait; the store knows them.
            delayed=max(depth.delayed, count(JobState.DELAYED)),
            paused=store_call(lambda: self.pauses.is_paused(queue)),
            dead=depth.dead,
        )

    # -- pause -----------------------------------------------------------------------------------------------

    def pause(self, name: str) -> None:
        """Every worker stops starting jobs from this queue within about a second; messages stay in RabbitMQ."""
        store_call(lambda: self.pauses.pause(self.check(name)))

    def resume(self, name: str) -> None:
        store_call(lambda: self.pauses.resume(self.check(name)))

    def paused(self) -> set[str]:
        return store_call(lambda: self.pauses.paused(self.names()))

    # -- purge -----------------------------------------------------------------------------------------------

    def purge(self, name: str) -> Purged:
        """Empty the queue and its delay queue, and mark their waiting jobs cancelled (the seed's rollback step).
        Running jobs are left to finish; dead letters are kept."""
        actors = self.jobs.actors_of(name)
        store_call(self.store.client.ping)
        removed = broker_call(lambda: queue_figures.purge(self.link, name))
        cancelled = store_call(lambda: self._cancel_waiting(actors))
        return Purged(name, removed, cancelled)

    def _cancel_waiting(self, actors: tuple[str, ...]) -> int:
        cancelled = 0
        for actor in actors:
            for state in (JobState.QUEUED, JobState.DELAYED):
                # Always read the first page: each job cancelled leaves the index being read. A job that turned
                # active meanwhile is left alone (waiting_only) and leaves the index too, so this ends.
                seen: set[str] = set()
                while page := [j.jobId for j in self.store.list(actor=actor, state=state, limit=200).jobs]:
                    if seen.issuperset(page):
                        break  # nothing left that a cancel would move (a record changed under us): stop, never spin
                    seen.update(page)
                    for job_id in page:
                        cancelled += (
                            self.store.cancel(job_id, waiting_only=True, reason="purged") is CancelOutcome.CANCELLED
                        )
        return cancelled

    # -- failed jobs -----------------------------------------------------------------------------------------

    def retry_failed(self, *, queue: str | None = None, actor: str | None = None) -> Retried:
        """Run every failed job again, under the same ids: of the queue's actors, of one actor, or of all."""
        if actor is not None:
            self.jobs.actor(actor)
        actors: tuple[str | None, ...] = self.jobs.actors_of(queue) if queue is not None else (actor,)
        retried, skipped = [], 0
        for job_id in (job_id for one in actors for job_id in self._failed(one)):
            try:
                self.jobs.retry(job_id)
                retried.append(job_id)
            except (Conflict, UnknownActor, LookupError):
                skipped += 1
        return Retried(retried, skipped)

    def _failed(self, actor: str | None) -> list[str]:
        ids: list[str] = []
        cursor: str | None = None
        while True:
            page = self.jobs.list(state=JobState.FAILED, actor=actor, limit=500, cursor=cursor)
            ids.extend(j.jobId for j in page.jobs)
            if page.next is None:
                return ids
            cursor = page.next
