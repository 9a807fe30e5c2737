"""A queue's dead letters as jobs, for the API, the CLI and the dashboard alike: a page of them, requeue, delete, and
the progress of a long "requeue all", kept in Redis so that any web process, the CLI or the page can show it."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import dramatiq
import redis

from service import logs
from service.domain.clock import iso_from_ms, now_ms
from service.domain.errors import UnknownQueue
from service.domain.records import JobRecord
from service.domain.states import RETRYABLE_STATES, JobState
from service.ops.jobs import Conflict, Jobs, KeyHeld, UnknownActor
from service.ops.unavailable import broker_call, store_call
from service.rabbit.dead_letters import MAX_DEPTH, DeadLetter, DeadLetters, Verdict
from service.store import keys, locks

logger = logging.getLogger(__name__)

#: A payload preview is at most this many characters (after redaction), so a page of 500 stays small.
PREVIEW_CHARS = 200
#: Options that belong to the attempt that died, not to the next try.
_ATTEMPT_OPTIONS = ("retries", "last_error", "traceback", "eta")
#: Payload fields whose name says they hold a secret are shown as *** in previews.
_SECRET_FIELD = re.compile(r"pass(word|wd)?|token|secret|api_?key|authori[sz]ation|credential", re.I)
#: The lock of a running "requeue all" lapses this long after its holder last wrote progress (it died).
LOCK_MS = 15_000
#: Progress is written at least this often (seconds), and the lock renewed with it.
SAVE_EVERY_S = 0.5
#: A finished requeue's progress stays readable this long.
KEEP_PROGRESS_S = 86_400


def _run_of(record: JobRecord) -> int:
    """Which run of its job the record is at: each retry by hand starts a new one."""
    return max((entry.run for entry in record.history), default=0)


class RequeueRunning(Conflict):
    """A "requeue all" of this queue is running already (here or in another process)."""


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if _SECRET_FIELD.search(str(k)) else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def preview(message: dramatiq.Message[Any] | None, raw: bytes) -> str:
    """The payload in one short line: secret-named fields masked, redacted as log lines are, capped."""
    if message is None:
        text = raw[: PREVIEW_CHARS * 4].decode("utf-8", errors="replace")
    else:
        payload: Any = message.kwargs if message.kwargs else {"args": list(message.args)} if message.args else {}
        text = json.dumps(_masked(payload), ensure_ascii=False, sort_keys=True, default=str)
    return logs.shorten(" ".join(text.split()), PREVIEW_CHARS)


@dataclass(frozen=True)
class DeadJob:
    """A dead message, with what the job store knows about its job."""

    letter: DeadLetter
    record: JobRecord | None

    @property
    def job_id(self) -> str:
        return self.letter.job_id

    @property
    def actor(self) -> str:
        return self.letter.actor

    @property
    def reason(self) -> str:
        if self.record and self.record.failedReason:
            return self.record.failedReason
        if self.letter.message is None:
            return "body is not a Dramatiq message"
        return logs.shorten(str(self.letter.message.options.get("last_error") or "unknown"), 2000)

    @property
    def dead_at(self) -> str | None:
        """When RabbitMQ dead-lettered it (whole seconds), else when the record says the job finished."""
        if self.letter.dead_at_ms is not None:
            return iso_from_ms(self.letter.dead_at_ms)
        return self.record.finishedAt if self.record else None

    @property
    def preview(self) -> str:
        return preview(self.letter.message, self.letter.raw)

    @property
    def state(self) -> JobState | None:
        return self.record.state if self.record else None


@dataclass(frozen=True)
class DeadPage:
    """Oldest first. `next` is the offset of the following page, None on the last one."""

    queue: str
    total: int
    offset: int
    items: list[DeadJob]
    next: int | None


@dataclass
class Requeued:
    requeued: int = 0  #: back in the main queue for another try
    stale: int = 0  #: removed: the job had run again or finished meanwhile (or this pass had sent it already)
    kept: int = 0  #: left in the dead-letter queue (not a Dramatiq message, or an actor this code does not know)
    missing: list[str] = field(default_factory=list)  #: asked-for job ids not found in the dead-letter queue

    @property
    def handled(self) -> int:
        return self.requeued + self.stale + self.kept


@dataclass(frozen=True)
class Deleted:
    deleted: int
    missing: list[str]


class RequeueState(StrEnum):
    #: Going on now; the figures grow.
    RUNNING = "running"
    #: Every message that could go back went back.
    DONE = "done"
    #: Stopped on an error (RabbitMQ or Redis away): what is left is still dead, start it again.
    FAILED = "failed"
    #: Its process died (no progress within the lock's time): what is left is still dead, start it again.
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class RequeueProgress:
    queue: str
    state: RequeueState
    total: int  #: dead messages when it started
    requeued: int
    stale: int
    kept: int
    started_at: str
    updated_at: str
    error: str | None = None

    @property
    def handled(self) -> int:
        return self.requeued + self.stale + self.kept


class DeadJobs:
    """One per process. Every call names its queue; an unknown queue raises UnknownQueue."""

    def __init__(self, jobs: Jobs, letters: DeadLetters, client: redis.Redis) -> None:
        self.jobs = jobs
        self.letters = letters
        self.client = client
        self.holder = locks.holder()

    def check_queue(self, name: str) -> str:
        if name not in self.jobs.queue_names():
            raise UnknownQueue(name)
        return name

    # -- read ------------------------------------------------------------------------------------------------

    def count(self, queue: str) -> int:
        self.check_queue(queue)
        return broker_call(lambda: self.letters.count(queue))

    def page(self, queue: str, offset: int = 0, limit: int = 50) -> DeadPage:
        """Without taking anything out. Offsets count from the oldest; requeues meanwhile shift them."""
        self.check_queue(queue)
        letters, total = broker_call(lambda: self.letters.page(queue, offset, limit))
        records = self._records([letter.job_id for letter in letters if letter.message is not None])
        items = [DeadJob(letter, records.get(letter.job_id)) for letter in letters]
        following = offset + len(items)
        return DeadPage(queue, total, offset, items, following if items and following < total else None)

    def _records(self, job_ids: list[str]) -> dict[str, JobRecord]:
        found: dict[str, JobRecord] = {}
        for job_id in job_ids:
            record = store_call(lambda job_id=job_id: self.jobs.store.get(job_id))  # type: ignore[misc]
            if record is not None:
                found[job_id] = record
        return found

    # -- requeue ---------------------------------------------------------------------------------------------

    def requeue(
        self,
        queue: str,
        job_ids: Collection[str] | None = None,
        *,
        saved: Callable[[Requeued], None] | None = None,
        each: Callable[[str, bool], None] | None = None,
    ) -> Requeued:
        """Put dead messages (all, or those of these jobs) back for another try, reopening each failed job.

        A message leaves the dead-letter queue only once its copy is confirmed by RabbitMQ; a crash in between
        leaves both, and the next requeue sends the job's current run again, which the worker skips by job id
        if it ran already. `saved` is called every SAVE_EVERY_S with the figures so far (a raise stops the run
        before the next message, with nothing half-done); `each` with each asked-for job's id and whether its dead
        letter went back, once its copy is safe and before the dead letter is acknowledged (a raise leaves it)."""
        self.check_queue(queue)
        wanted = set(job_ids) if job_ids is not None else None
        outcome = Requeued()
        if wanted is not None and not wanted:
            return outcome  # nothing asked for: no need to read the whole queue to find it
        sent: set[str] = set()
        last = [time.monotonic()]

        def handle(letter: DeadLetter) -> Verdict:
            if wanted is not None and letter.job_id not in wanted:
                return Verdict.KEEP  # not counted: not asked for
            before = outcome.requeued
            verdict = self._requeue_letter(letter, sent, outcome)
            if letter.message is not None:
                sent.add(letter.job_id)
                if each is not None:
                    each(letter.job_id, outcome.requeued > before)
            return verdict

        def stop() -> bool:
            if saved is not None and time.monotonic() - last[0] >= SAVE_EVERY_S:
                saved(outcome)
                last[0] = time.monotonic()
            return False

        broker_call(lambda: self.letters.drain(queue, handle, stop))
        if wanted is not None:
            outcome.missing = sorted(wanted - sent)
        return outcome

    def _requeue_letter(self, letter: DeadLetter, sent: set[str], outcome: Requeued) -> Verdict:
        message = letter.message
        if message is None:
            outcome.kept += 1
            return Verdict.KEEP
        if letter.job_id in sent:
            outcome.stale += 1  # a second dead copy of a job this pass sent already
            return Verdict.REMOVE
        try:
            actor = self.jobs.actor(letter.actor)
        except UnknownActor:
            outcome.kept += 1
            return Verdict.KEEP
        record = store_call(lambda: self.jobs.store.get(letter.job_id))
        if record is None:
            # Pruned, or sent by another service and never seen: publish it again as it was, confirmed; the status
            # middleware records it once published (recorded=False), as it does for a plain `send`.
            options = {k: v for k, v in message.options.items() if k not in _ATTEMPT_OPTIONS}
            # Not message.copy(): it merges the options given into the old ones, so the dead attempt's would stay.
            again = replace(message, queue_name=actor.queue_name, options=options)
            broker_call(lambda: self.jobs.publisher.publish(again, recorded=False))
            run = int(message.options.get("job_run", 0))
        elif record.state in RETRYABLE_STATES:
            try:
                reopened = self.jobs.retry(record.jobId)  # reopen (failed -> queued, run + 1), publish, confirmed
            except KeyHeld:
                outcome.kept += 1  # a singleton whose key another job holds now: kept for a later requeue
                return Verdict.KEEP
            except Conflict:
                outcome.stale += 1  # retried by someone else meanwhile
                return Verdict.REMOVE
            run = _run_of(reopened)
        elif record.state is JobState.QUEUED:
            run = _run_of(record)
            if self._sent_run(letter.job_id) == run:
                outcome.stale += 1  # an earlier requeue sent this run, and died before this dead letter's ack
                return Verdict.REMOVE
            # Reopened, but whether its copy was published is unknown (a requeue that died in between, or a retry
            # by hand): send the current run again. A second copy of one run is skipped by the worker by job id.
            self._republish(record, actor.queue_name, run)
        else:
            outcome.stale += 1  # active, delayed for a retry, or finished: this copy must not run
            return Verdict.REMOVE
        # Only now is the dead letter acknowledged; the mark lets a requeue after a crash tell this copy was sent.
        store_call(lambda: self.client.set(keys.dead_sent(letter.job_id), run, ex=KEEP_PROGRESS_S))
        outcome.requeued += 1
        return Verdict.REMOVE

    def would_requeue(self, job_id: str, state: JobState | None, run: int) -> bool:
        """Whether a requeue would send this job's dead letter back (the decision _requeue_letter takes), for a job
        whose record is in `state` at `run` (None: no record): what a bulk requeue-dead counts in its dry run."""
        if state is None or state in RETRYABLE_STATES:
            return True
        return state is JobState.QUEUED and self._sent_run(job_id) != run

    def letter_ids(self, queue: str) -> set[str]:
        """The job ids of the queue's dead letters (the first MAX_DEPTH of them), read without taking any out."""
        self.check_queue(queue)
        letters, _ = broker_call(lambda: self.letters.page(queue, 0, MAX_DEPTH))
        return {letter.job_id for letter in letters if letter.message is not None}

    def _sent_run(self, job_id: str) -> int | None:
        value = store_call(lambda: self.client.get(keys.dead_sent(job_id)))
        return int(value) if isinstance(value, str) and value.isdigit() else None

    def _republish(self, record: JobRecord, queue: str, run: int) -> None:
        # The job's own message again: the same id, payload, priority and key (a sender's key is on the record only).
        actor = self.jobs.actor(record.actor)
        message = self.jobs.run_message(record.jobId, actor, record.data, run, record.priority, record.key)
        message = message.copy(queue_name=queue)
        broker_call(lambda: self.jobs.publisher.publish(message))

    # -- requeue all, with progress --------------------------------------------------------------------------

    def requeue_all(self, queue: str, *, shown: Callable[[RequeueProgress], None] | None = None) -> RequeueProgress:
        """In this thread (the CLI), writing progress to Redis as it goes. Raises RequeueRunning."""
        token = self._claim(queue)
        return self._run(queue, token, shown or (lambda _: None))

    def start_requeue_all(self, queue: str) -> RequeueProgress:
        """In a background thread of this process (the API answers at once). Raises RequeueRunning."""
        token = self._claim(queue)
        started = self.progress(queue)
        assert started is not None
        threading.Thread(target=self._run, args=(queue, token, None), name=f"requeue-{queue}", daemon=True).start()
        return started

    def progress(self, queue: str) -> RequeueProgress | None:
        """The latest "requeue all" of the queue, or None if none ran within KEEP_PROGRESS_S."""
        self.check_queue(queue)
        fields, alive = store_call(lambda: self._read(queue))
        if not fields:
            return None
        state = RequeueState(fields["state"])
        if state is RequeueState.RUNNING and not alive:
            state = RequeueState.INTERRUPTED
        return RequeueProgress(
            queue=queue,
            state=state,
            total=int(fields.get("total", 0)),
            requeued=int(fields.get("requeued", 0)),
            stale=int(fields.get("stale", 0)),
            kept=int(fields.get("kept", 0)),
            started_at=fields.get("startedAt", ""),
            updated_at=fields.get("updatedAt", ""),
            error=fields.get("error") or None,
        )

    def _read(self, queue: str) -> tuple[dict[str, str], bool]:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(keys.dead_requeue(queue))
        pipe.get(keys.lock(f"dead-requeue:{queue}"))
        fields, holder = pipe.execute()
        return dict(fields), holder is not None and self._alive(holder)

    def _alive(self, lock_value: str) -> bool:
        """A lock whose holder was a process on this machine that no longer exists is dead at once; another
        machine's holder is alive until its lock lapses (LOCK_MS after its last progress)."""
        return locks.holder_alive(lock_value)

    def _claim(self, queue: str) -> str:
        self.check_queue(queue)
        total = self.count(queue)
        token = f"{self.holder}/{uuid.uuid4().hex[:8]}"
        lock = keys.lock(f"dead-requeue:{queue}")
        held = store_call(lambda: self.client.get(lock))
        if isinstance(held, str) and not self._alive(held):
            # Its process was killed mid-run: what it left is safe in the dead-letter queue, so take over now.
            logger.warning("the requeue of %s by %s died; taking over", queue, held.partition("/")[0])
            store_call(lambda: self._unlock(lock, held))
        if not store_call(lambda: self.client.set(lock, token, nx=True, px=LOCK_MS)):
            raise RequeueRunning(f"a requeue of the dead letters of {queue} is running already")
        now = iso_from_ms(now_ms())
        fields: dict[str, str | int] = {"state": RequeueState.RUNNING.value, "total": total}
        fields |= {"requeued": 0, "stale": 0, "kept": 0}
        fields |= {"startedAt": now, "updatedAt": now, "holder": self.holder, "error": ""}
        store_call(lambda: self.client.hset(keys.dead_requeue(queue), mapping=fields))  # type: ignore[arg-type]
        return token

    def _unlock(self, lock: str, value: str) -> None:
        locks.release(self.client, lock, value)  # only if it still has the value seen: another run may have it now

    def _save(self, queue: str, token: str, figures: Requeued, state: RequeueState, error: str = "") -> None:
        fields: dict[str, str | int] = {"requeued": figures.requeued, "stale": figures.stale, "kept": figures.kept}
        fields |= {"state": state.value, "updatedAt": iso_from_ms(now_ms()), "error": error}
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(keys.dead_requeue(queue), mapping=fields)  # type: ignore[arg-type]
        if state is RequeueState.RUNNING:
            pipe.pexpire(keys.lock(f"dead-requeue:{queue}"), LOCK_MS)
        else:
            pipe.expire(keys.dead_requeue(queue), KEEP_PROGRESS_S)
        pipe.execute()

    def _run(self, queue: str, token: str, shown: Callable[[RequeueProgress], None] | None) -> RequeueProgress:
        """Raises what stopped it when run in the foreground; in the background, the progress record says it."""
        figures = Requeued()

        def saved(so_far: Requeued) -> None:
            nonlocal figures
            figures = so_far
            self._save(queue, token, so_far, RequeueState.RUNNING)
            if shown is not None and (progress := self.progress(queue)) is not None:
                shown(progress)

        try:
            figures = self.requeue(queue, saved=saved)
            store_call(lambda: self._save(queue, token, figures, RequeueState.DONE))
        except Exception as error:
            logger.warning("requeue of the dead letters of %s stopped: %s", queue, error)
            with contextlib.suppress(Exception):  # best effort: the failure itself matters more
                self._save(queue, token, figures, RequeueState.FAILED, logs.shorten(str(error), 500))
            if shown is not None:
                raise
        finally:
            with contextlib.suppress(Exception):
                self._unlock(keys.lock(f"dead-requeue:{queue}"), token)
        return self.progress(queue) or RequeueProgress(
            queue, RequeueState.DONE, figures.handled, figures.requeued, figures.stale, figures.kept, "", ""
        )

    # -- delete ----------------------------------------------------------------------------------------------

    def delete(self, queue: str, job_ids: Collection[str] | None = None) -> Deleted:
        """Remove dead messages for good (all, or those of these jobs). Their records stay as they are (failed)."""
        self.check_queue(queue)
        if job_ids is None:
            return Deleted(broker_call(lambda: self.letters.purge(queue)), [])
        wanted = set(job_ids)
        if not wanted:
            return Deleted(0, [])
        found: set[str] = set()

        def handle(letter: DeadLetter) -> Verdict:
            if letter.message is None or letter.job_id not in wanted:
                return Verdict.KEEP
            found.add(letter.job_id)
            return Verdict.REMOVE

        deleted, _ = broker_call(lambda: self.letters.drain(queue, handle))
        return Deleted(deleted, sorted(wanted - found))
