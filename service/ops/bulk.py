"""Bulk actions by filter: cancel, retry or requeue-dead every job a filter matches, counted first (a dry run) or run in
the background of a web process with its progress in Redis, for the API, the CLI and the dashboard alike.

A run takes a snapshot of the jobs the action can act on as it starts (what a dry run counts), then goes through it
in batches under a lease (service/store/bulk_store.py). It outlives its process: another web process takes over a run
whose lease lapsed (or whose holder on the same machine is gone) and goes on from the last batch committed. Each job
is crash-safe: before acting on a batch the run writes its intents (each job's run as seen), so the process that takes
over knows what was begun. For a retry (reopen, then publish) a job found reopened past its intent but still queued
has its message published again: a duplicate of one run is skipped by the worker by job id and run, a missing one
would leave the job queued for ever."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import dramatiq

from service import logs
from service.background import BackgroundLoop
from service.domain.bulk_action import ACTS_ON, BulkAction, BulkProgress, BulkState
from service.domain.clock import iso_from_ms, now_ms
from service.domain.job_filter import JobFilter
from service.domain.states import JobState, Priority
from service.ops.dead_jobs import DeadJobs
from service.ops.jobs import Jobs
from service.ops.unavailable import broker_call, failure, store_call
from service.store.bulk_store import BulkStore
from service.store.job_store import CancelOutcome

logger = logging.getLogger(__name__)

#: Jobs acted on per batch: one round trip of reads, one of intents, one of actions, one publish, one commit.
BATCH = 200
#: How often each web process looks for a run whose lease lapsed.
WATCH_S = 1.0
#: A run that meets RabbitMQ or Redis away waits this long before trying its batch again (doubling to BACKOFF_MAX_S).
BACKOFF_S = 0.5
BACKOFF_MAX_S = 10.0

#: What a retry's message is built from.
_RETRY_FIELDS = ("state", "run", "actor", "data", "priority", "key")


class BulkNotFound(LookupError):
    """No bulk run has this id (or it finished more than a day ago)."""


class LeaseLost(Exception):
    """This process no longer holds the run's lease: another took the run over, and goes on with it."""


@dataclass
class _Tally:
    acted: int = 0
    skipped: int = 0


class BulkActions:
    """One per process, built by the composition root."""

    def __init__(self, jobs: Jobs, dead: DeadJobs, runs: BulkStore, *, batch: int = BATCH) -> None:
        self.jobs = jobs
        self.dead = dead
        self.runs = runs
        self.batch = batch
        #: Set when the web process stops: its runs give their leases back between two batches.
        self._stopping = threading.Event()
        self._watcher = BackgroundLoop("bulk-watch", self._watch)
        self._here: dict[str, threading.Thread] = {}
        self._here_lock = threading.Lock()
        #: Runs this process leaves to others (it does not declare their jobs): said once each in the log.
        self._left: set[str] = set()

    # -- dry run, start, progress --------------------------------------------------------------------------------

    def count(self, flt: JobFilter, action: BulkAction) -> int:
        """How many jobs the action would act on now: what a run started now takes as its snapshot."""
        return len(self.snapshot(flt, action))

    def start(self, flt: JobFilter, action: BulkAction) -> BulkProgress:
        """Takes the snapshot and runs the action in a thread of this process; returns the run as it starts."""
        bulk_id, token = self._create(flt, action)
        self._launch(bulk_id, token)
        return self.progress(bulk_id)

    def run_here(
        self, flt: JobFilter, action: BulkAction, shown: Callable[[BulkProgress], None] | None = None
    ) -> BulkProgress:
        """The same in this thread (the CLI), calling `shown` after each batch. Should this process die, a web
        process takes the run over."""
        bulk_id, token = self._create(flt, action)
        if shown is not None:
            shown(self.progress(bulk_id))
        self._run(bulk_id, token, threading.Event(), shown)
        return self.progress(bulk_id)

    def progress(self, bulk_id: str) -> BulkProgress:
        fields = store_call(lambda: self.runs.read(bulk_id))
        if not fields:
            raise BulkNotFound(bulk_id)
        return BulkProgress(
            bulk_id=bulk_id,
            action=BulkAction(fields["action"]),
            filter=JobFilter.loads(fields["filter"]),
            state=BulkState(fields["state"]),
            total=int(fields.get("total", 0)),
            done=int(fields.get("done", 0)),
            acted=int(fields.get("acted", 0)),
            skipped=int(fields.get("skipped", 0)),
            started_at=fields.get("startedAt", ""),
            updated_at=fields.get("updatedAt", ""),
            finished_at=fields.get("finishedAt") or None,
            error=fields.get("error") or None,
        )

    # -- the snapshot --------------------------------------------------------------------------------------------

    def snapshot(self, flt: JobFilter, action: BulkAction) -> list[str]:
        """The jobs the filter matches that the action can act on now, newest first."""
        return [job_id for job_id, _ in store_call(lambda: self._snapshot(flt, action))]

    def _snapshot(self, flt: JobFilter, action: BulkAction) -> list[tuple[str, str]]:
        """(job id, actor) of each job the action can act on now, newest first."""
        known = set(self.jobs.actor_names())
        states = {state.value for state in ACTS_ON[action]}
        candidates = [
            (job_id, row)
            for batch in self.jobs.store.matching(flt, ("state", "actor", "run"))
            for job_id, row in batch
            if row["state"] in states and (action is BulkAction.CANCEL or row["actor"] in known)
        ]
        if action is not BulkAction.REQUEUE_DEAD:
            return [(job_id, str(row["actor"])) for job_id, row in candidates]
        # Only jobs whose dead letter is in their queue's dead-letter queue, and that the requeue would send back.
        queue_of = self.jobs.queues_of_actors()
        letters = {
            queue: self.dead.letter_ids(queue) for queue in {queue_of[str(row["actor"])] for _, row in candidates}
        }
        return [
            (job_id, str(row["actor"]))
            for job_id, row in candidates
            if job_id in letters[queue_of[str(row["actor"])]]
            and self.dead.would_requeue(job_id, JobState(str(row["state"])), int(row["run"] or 0))
        ]

    def _create(self, flt: JobFilter, action: BulkAction) -> tuple[str, str]:
        rows = store_call(lambda: self._snapshot(flt, action))
        job_ids = [job_id for job_id, _ in rows]
        bulk_id, token = str(uuid.uuid4()), self.runs.new_token()
        stamp = now_ms()
        fields: dict[str, str | int] = {"action": action.value, "filter": flt.dumps(), "state": BulkState.RUNNING.value}
        fields["actors"] = json.dumps(sorted({actor for _, actor in rows}))  # who may take it over (adopt)
        fields |= {"total": len(job_ids), "done": 0, "acted": 0, "skipped": 0, "error": ""}
        fields |= {"startedAt": iso_from_ms(stamp), "startedMs": stamp, "updatedAt": iso_from_ms(stamp)}
        store_call(lambda: self.runs.create(bulk_id, fields, job_ids, token))
        logger.info("bulk %s: %s of %d jobs matching %s", bulk_id, action.value, len(job_ids), flt.dumps())
        return bulk_id, token

    # -- running -------------------------------------------------------------------------------------------------

    def _launch(self, bulk_id: str, token: str) -> None:
        thread = threading.Thread(
            target=self._run, args=(bulk_id, token, self._stopping, None), name=f"bulk-{bulk_id[:8]}", daemon=True
        )
        with self._here_lock:
            self._here[bulk_id] = thread
        thread.start()

    def _run(
        self, bulk_id: str, token: str, stopping: threading.Event, shown: Callable[[BulkProgress], None] | None
    ) -> None:
        """Until the run is done, its lease is lost, or `stopping` (then the lease is given back). RabbitMQ or Redis
        away: the batch is tried again after a pause, as long as the lease holds. Any other error ends it failed."""
        backoff = BACKOFF_S
        try:
            while not stopping.is_set():
                try:
                    if self._go_through(bulk_id, token, stopping, shown):
                        if not store_call(lambda: self.runs.finish(bulk_id, token, BulkState.DONE.value)):
                            raise LeaseLost(bulk_id)
                        logger.info("bulk %s: done", bulk_id)
                    return
                except LeaseLost:
                    logger.warning("bulk %s: its lease went to another process, which goes on with it", bulk_id)
                    return
                except Exception as error:
                    if failure(error) is None:
                        logger.exception("bulk %s: stopped", bulk_id)
                        why = logs.shorten(f"{type(error).__name__}: {error}", 500)  # UnknownActor's text is a name
                        with contextlib.suppress(Exception):
                            self.runs.finish(bulk_id, token, BulkState.FAILED.value, why)
                        return
                    logger.warning("bulk %s: %s; trying again in %.1fs", bulk_id, failure(error), backoff)
                    stopping.wait(backoff)
                    backoff = min(2 * backoff, BACKOFF_MAX_S)
            with contextlib.suppress(Exception):
                self.runs.release(bulk_id, token)  # stopping: another process takes it over at once
        finally:
            with self._here_lock:
                if self._here.get(bulk_id) is threading.current_thread():
                    del self._here[bulk_id]

    def _go_through(
        self, bulk_id: str, token: str, stopping: threading.Event, shown: Callable[[BulkProgress], None] | None
    ) -> bool:
        """Acts on what is left of the snapshot; True once all of it is done, False when asked to stop first."""
        action = self.progress(bulk_id).action
        if action is BulkAction.REQUEUE_DEAD:
            return self._requeue_dead(bulk_id, token, stopping, shown)
        while not stopping.is_set():
            done = self.progress(bulk_id).done  # the cursor: the batches before it are committed
            job_ids = store_call(functools.partial(self.runs.ids, bulk_id, done, self.batch))
            if not job_ids:
                return True
            tally = (
                self._retry(bulk_id, token, job_ids)
                if action is BulkAction.RETRY
                else self._cancel(bulk_id, token, job_ids)
            )
            commit = functools.partial(self.runs.commit, bulk_id, token, len(job_ids), tally.acted, tally.skipped)
            if not store_call(commit):
                raise LeaseLost(bulk_id)
            if shown is not None:
                shown(self.progress(bulk_id))
        return False

    def _begin(self, bulk_id: str, token: str, intents: dict[str, int]) -> None:
        if intents and not store_call(lambda: self.runs.begin(bulk_id, token, intents)):
            raise LeaseLost(bulk_id)

    def _retry(self, bulk_id: str, token: str, job_ids: list[str]) -> _Tally:
        """Reopen each failed or cancelled job (a new run), then publish the batch's messages in one transaction."""
        store = self.jobs.store
        rows = dict(zip(job_ids, store_call(lambda: store.fields_of(job_ids, _RETRY_FIELDS)), strict=True))
        intents = store_call(lambda: self.runs.intents(bulk_id, job_ids))
        known = set(self.jobs.actor_names())
        tally = _Tally()
        fresh: dict[str, int] = {}
        again: list[str] = []  # reopened by an earlier holder of this run, their message perhaps never published
        for job_id, intent in zip(job_ids, intents, strict=True):
            row = rows[job_id]
            run = int(row["run"] or 0)
            if intent is not None and run > int(intent):
                tally.acted += 1
                if row["state"] == JobState.QUEUED.value:
                    again.append(job_id)
            elif row["state"] in (JobState.FAILED.value, JobState.CANCELLED.value) and row["actor"] in known:
                fresh[job_id] = run
            else:
                tally.skipped += 1  # it changed since the snapshot: the retry no longer applies
        self._begin(bulk_id, token, fresh)
        reopened = store_call(lambda: store.reopen_many(list(fresh)))
        messages = [self._message(job_id, rows[job_id], int(rows[job_id]["run"] or 0)) for job_id in again]
        for job_id, outcome in zip(fresh, reopened, strict=True):
            if outcome.run is None:
                tally.skipped += 1  # retried by someone else since it was read
            else:
                tally.acted += 1
                messages.append(self._message(job_id, rows[job_id], outcome.run))
        if messages:
            broker_call(lambda: self.jobs.publisher.publish_batch(messages))
        return tally

    def _message(self, job_id: str, row: dict[str, str | None], run: int) -> dramatiq.Message[Any]:
        priority = row["priority"] if row["priority"] in set(Priority) else Priority.NORMAL.value
        data = json.loads(row["data"] or "{}")
        actor = self.jobs.actor(str(row["actor"]))
        return self.jobs.run_message(job_id, actor, data, run, str(priority), row["key"])

    def _cancel(self, bulk_id: str, token: str, job_ids: list[str]) -> _Tally:
        store = self.jobs.store
        states = store_call(lambda: store.fields_of(job_ids, ("state",)))
        intents = store_call(lambda: self.runs.intents(bulk_id, job_ids))
        cancellable = {state.value for state in ACTS_ON[BulkAction.CANCEL]}
        tally = _Tally()
        resumed = [job_id for job_id, intent in zip(job_ids, intents, strict=True) if intent is not None]
        fresh = [
            job_id
            for job_id, row, intent in zip(job_ids, states, intents, strict=True)
            if intent is None and row["state"] in cancellable
        ]
        tally.skipped += len(job_ids) - len(resumed) - len(fresh)
        self._begin(bulk_id, token, dict.fromkeys(fresh, 0))
        outcomes = store_call(lambda: store.cancel_many([*resumed, *fresh]))
        for job_id, outcome in zip([*resumed, *fresh], outcomes, strict=True):
            done_before = job_id in resumed and outcome is CancelOutcome.ALREADY_CANCELLED  # by the earlier holder
            if outcome in (CancelOutcome.CANCELLED, CancelOutcome.CANCELLING) or done_before:
                tally.acted += 1
            else:
                tally.skipped += 1
        return tally

    def _requeue_dead(
        self, bulk_id: str, token: str, stopping: threading.Event, shown: Callable[[BulkProgress], None] | None
    ) -> bool:
        """Through each queue's dead letters once, sending back those of the snapshot's jobs not handled yet."""
        handled = store_call(lambda: self.runs.handled(bulk_id))
        left = [job_id for job_id in store_call(lambda: self.runs.ids(bulk_id)) if job_id not in handled]
        queue_of = self.jobs.queues_of_actors()
        by_queue: dict[str, list[str]] = {}
        for start in range(0, len(left), self.batch):
            chunk = left[start : start + self.batch]
            rows = store_call(functools.partial(self.jobs.store.fields_of, chunk, ("actor",)))
            for job_id, row in zip(chunk, rows, strict=True):
                queue = queue_of.get(str(row["actor"]))
                if queue is None:
                    self._mark(bulk_id, token, job_id, acted=False)  # its record or its actor is gone
                else:
                    by_queue.setdefault(queue, []).append(job_id)
        last = [time.monotonic()]

        def each(job_id: str, acted: bool) -> None:
            self._mark(bulk_id, token, job_id, acted)
            if shown is not None and time.monotonic() - last[0] >= 0.5:
                shown(self.progress(bulk_id))
                last[0] = time.monotonic()

        def saved(_: object) -> None:  # a long pass over letters of other jobs still renews the lease
            if not store_call(lambda: self.runs.renew(bulk_id, token)):
                raise LeaseLost(bulk_id)

        for queue, job_ids in by_queue.items():
            if stopping.is_set():
                return False
            outcome = self.dead.requeue(queue, job_ids, saved=saved, each=each)
            self._mark_all(bulk_id, token, outcome.missing)  # no dead letter any more: requeued or deleted since
        return True

    def _mark(self, bulk_id: str, token: str, job_id: str, acted: bool) -> None:
        if not store_call(lambda: self.runs.mark(bulk_id, token, job_id, acted)):
            raise LeaseLost(bulk_id)

    def _mark_all(self, bulk_id: str, token: str, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self._mark(bulk_id, token, job_id, acted=False)

    # -- taking runs over ------------------------------------------------------------------------------------------

    def watch(self) -> None:
        """From now on this process takes over runs whose lease lapsed (the web process's lifespan)."""
        self._watcher.start()

    def stop(self, wait_s: float = 5.0) -> None:
        """Stop watching; runs in this process give their leases back after their current batch."""
        # The watcher first: a run it took over after the runs were told to stop would go on past this stop.
        deadline = time.monotonic() + wait_s
        self._watcher.stop(wait_s)
        stopping, self._stopping = self._stopping, threading.Event()  # a run started after this one goes on
        stopping.set()
        with self._here_lock:
            threads = list(self._here.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def adopt(self, stopping: threading.Event | None = None) -> list[str]:
        """Take over every unfinished run whose lease is free and whose jobs this process declares; returns their
        ids. Stops taking runs over once `stopping` is set."""
        taken = []
        running = store_call(self.runs.running)
        self._left &= set(running)
        for bulk_id in running:
            if stopping is not None and stopping.is_set():
                break
            with self._here_lock:
                if bulk_id in self._here:
                    continue
            if not self._declares_jobs_of(bulk_id):
                continue
            token = self.runs.new_token()
            if store_call(functools.partial(self.runs.take_over, bulk_id, token)):
                logger.warning("bulk %s: its process stopped; this one goes on with it", bulk_id)
                self._launch(bulk_id, token)
                taken.append(bulk_id)
        return taken

    def _declares_jobs_of(self, bulk_id: str) -> bool:
        """Whether this process can go on with the run: a retry builds each job's message from its actor, a requeue
        finds its queue by it, so a process that does not declare one of the run's jobs would skip those jobs, or end
        the run failed on a job the process before it had reopened. It leaves the run to a process that does."""
        fields = store_call(lambda: self.runs.read(bulk_id))
        if fields.get("action") in (None, BulkAction.CANCEL.value) or "actors" not in fields:
            return True  # a cancel acts on any job; a run written before the field was: as before, anyone
        missing = set(json.loads(fields["actors"])) - set(self.jobs.actor_names())
        if missing and bulk_id not in self._left:
            self._left.add(bulk_id)
            logger.info("bulk %s: left to a process that declares %s", bulk_id, ", ".join(sorted(missing)))
        return not missing

    def _watch(self) -> None:
        stopping = self._watcher.stopping  # its own: a watcher started again after a slow stop has another
        while not stopping.wait(WATCH_S):
            try:
                self.adopt(stopping)
            except Exception as error:
                logger.warning("bulk runs: cannot look for runs to take over: %s", error)
