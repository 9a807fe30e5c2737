"""The service layer for steering queues: pause, resume, dead letters, and re-running failed jobs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from service.domain.states import JobState
from service.ops.dead_jobs import DeadJob, DeadJobs, Requeued
from service.ops.jobs import Conflict, Jobs, UnknownActor
from service.ops.jobs import UnknownQueue as UnknownQueue  # one class for the API, the CLI and the dashboard
from service.ops.unavailable import broker_call, store_call
from service.rabbit.dead_letters import DeadLetters
from service.store.pauses import PauseFlags

T = TypeVar("T")


@dataclass(frozen=True)
class Retried:
    retried: list[str]
    skipped: int  #: changed state meanwhile, or belongs to an actor this code does not know


class QueueControl:
    def __init__(self, jobs: Jobs, pauses: PauseFlags, dead_letters: DeadLetters) -> None:
        self.jobs = jobs
        self.pauses = pauses
        self.dead_letters = dead_letters
        #: Dead letters have a module of their own (service/ops/dead_jobs.py); these methods are kept for callers.
        self.dead_jobs = DeadJobs(jobs, dead_letters, jobs.store.client)

    def check_queue(self, name: str) -> str:
        if name not in self.jobs.queue_names():
            raise UnknownQueue(name)
        return name

    # -- pause -----------------------------------------------------------------------------------------------

    def pause(self, name: str) -> None:
        """Every worker stops starting jobs from this queue within about a second; messages stay in RabbitMQ."""
        self._store(lambda: self.pauses.pause(self.check_queue(name)))

    def resume(self, name: str) -> None:
        self._store(lambda: self.pauses.resume(self.check_queue(name)))

    def paused(self) -> set[str]:
        return self._store(lambda: self.pauses.paused(self.jobs.queue_names()))

    # -- dead letters ----------------------------------------------------------------------------------------

    def dead_count(self, name: str) -> int:
        return self.dead_jobs.count(name)

    def dead(self, name: str, limit: int = 100) -> list[DeadJob]:
        """What sits in the queue's dead-letter queue, oldest first, without taking it out."""
        return self.dead_jobs.page(name, 0, limit).items

    def requeue_dead(self, name: str) -> Requeued:
        """Put every dead message of the queue back for another try, reopening its job's record."""
        return self.dead_jobs.requeue(name)

    # -- failed jobs -----------------------------------------------------------------------------------------

    def retry_failed(self, actor: str | None = None) -> Retried:
        """Run every failed job (of one actor, or all) again, under the same ids."""
        if actor is not None:
            self.jobs.actor(actor)
        ids: list[str] = []
        cursor: str | None = None
        while True:
            page = self.jobs.list(state=JobState.FAILED, actor=actor, limit=500, cursor=cursor)
            ids.extend(j.jobId for j in page.jobs)
            if page.next is None:
                break
            cursor = page.next
        retried, skipped = [], 0
        for job_id in ids:
            try:
                self.jobs.retry(job_id)
                retried.append(job_id)
            except (Conflict, UnknownActor, LookupError):
                skipped += 1
        return Retried(retried, skipped)

    # -- plumbing --------------------------------------------------------------------------------------------

    @staticmethod
    def _store(call: Callable[[], T]) -> T:
        return store_call(call)

    @staticmethod
    def _broker(call: Callable[[], T]) -> T:
        return broker_call(call)  # dead letters are handled with their records: either server may fail
