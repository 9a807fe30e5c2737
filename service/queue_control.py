"""The service layer for steering queues: pause, resume, dead letters, and re-running failed jobs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from service.dead_letters import DeadLetter, DeadLetters
from service.jobs import Conflict, Jobs, UnknownActor
from service.jobs import UnknownQueue as UnknownQueue  # one class for the API, the CLI and the dashboard
from service.pauses import PauseFlags
from service.records import JobRecord
from service.states import RETRYABLE_STATES, JobState
from service.unavailable import broker_call, store_call

T = TypeVar("T")

#: Options that belong to the attempt that died, not to the next try.
_ATTEMPT_OPTIONS = ("retries", "last_error", "traceback", "eta")


@dataclass(frozen=True)
class DeadJob:
    """A dead message, with what the job store knows about its job."""

    letter: DeadLetter
    record: JobRecord | None

    @property
    def reason(self) -> str:
        if self.record and self.record.failedReason:
            return self.record.failedReason
        if self.letter.message is None:
            return "body is not a Dramatiq message"
        return str(self.letter.message.options.get("last_error") or "unknown")


@dataclass(frozen=True)
class Requeued:
    requeued: int  #: back in the main queue for another try
    stale: int  #: removed: the job had already been retried or had finished
    kept: int  #: left in the dead-letter queue (not a Dramatiq message, or an actor this code does not know)


@dataclass(frozen=True)
class Retried:
    retried: list[str]
    skipped: int  #: changed state meanwhile, or belongs to an actor this code does not know


class QueueControl:
    def __init__(self, jobs: Jobs, pauses: PauseFlags, dead_letters: DeadLetters) -> None:
        self.jobs = jobs
        self.pauses = pauses
        self.dead_letters = dead_letters

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
        self.check_queue(name)
        return self._broker(lambda: self.dead_letters.count(name))

    def dead(self, name: str, limit: int = 100) -> list[DeadJob]:
        """What sits in the queue's dead-letter queue, oldest first, without taking it out."""
        self.check_queue(name)
        letters = self._broker(lambda: self.dead_letters.peek(name, limit))
        return [DeadJob(letter, self._record(letter.job_id)) for letter in letters]

    def _record(self, job_id: str) -> JobRecord | None:
        return self._store(lambda: self.jobs.store.get(job_id))

    def requeue_dead(self, name: str) -> Requeued:
        """Put every dead message of the queue back for another try, reopening its job's record."""
        self.check_queue(name)
        outcome = {"requeued": 0, "stale": 0}

        def handle(letter: DeadLetter) -> bool:
            message = letter.message
            if message is None:
                return False
            record = self._record(letter.job_id)
            if record is None:
                # Pruned, or sent by another service and never seen: publish it again as it was.
                try:
                    self.jobs.actor(letter.actor)
                except UnknownActor:
                    return False
                options = {k: v for k, v in message.options.items() if k not in _ATTEMPT_OPTIONS}
                self._broker(lambda: self.jobs.broker.enqueue(message.copy(queue_name=name, options=options)))
                outcome["requeued"] += 1
                return True
            if record.state not in RETRYABLE_STATES:
                outcome["stale"] += 1  # already running again or finished: this copy must not run
                return True
            try:
                self.jobs.retry(record.jobId)  # reopen (failed -> queued, run + 1) and publish, with confirms
            except UnknownActor:
                return False
            except Conflict:
                outcome["stale"] += 1
                return True
            outcome["requeued"] += 1
            return True

        _, kept = self._broker(lambda: self.dead_letters.drain(name, handle))
        return Requeued(outcome["requeued"], outcome["stale"], kept)

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
