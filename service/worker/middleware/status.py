"""Records every job's life in the job store: queued, delayed, active, completed, failed, cancelled."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import dramatiq
import redis
from dramatiq.common import q_name
from dramatiq.middleware import SkipMessage

from service import tracing
from service.domain import envelope
from service.domain.context import JobContext, current_job, this_process
from service.domain.errors import JobCancelled, LeaseLost
from service.domain.states import FINAL_STATES, JobState
from service.rabbit.publisher import EnqueueRecorder
from service.store.job_store import JobStore, Transition
from service.store.record_fields import PARENT_ATTEMPT, delayed_fields, record_fields, retries_of, run_of, to_json
from service.worker.middleware.in_hand import JobsInHand
from service.worker.middleware.lease import JobLease
from service.worker.middleware.retries import describe, stored_traceback
from service.worker.progress import flush_progress

logger = logging.getLogger("service.jobs")
T = TypeVar("T")

#: Set on every message this service's senders publish: their record is written as they publish. A message without
#: it (another service's plain Dramatiq client) has no record yet, so its first write carries the whole record at
#: once instead of finding it missing and writing again.
RECORDED = "recorded"


class StatusMiddleware(EnqueueRecorder):
    """Writes each transition; skips messages whose job is already final (redelivered or cancelled)."""

    def __init__(
        self,
        store: JobStore,
        in_hand: JobsInHand,
        *,
        outage_grace_s: float,
        cancel_poll_s: float = 1.0,
        max_payload_bytes: int,
        max_restarts: int = 2,
        lease_ms: int,
        leases: JobLease | None = None,
    ) -> None:
        self.store = store
        #: Which job each worker thread has in hand: "active" marks its entry, the cancel watcher reads them.
        self.in_hand = in_hand
        #: Keeps the leases "active" takes, and knows each running attempt's fencing token for its finishing writes.
        self.leases = leases
        self.max_payload_bytes = max_payload_bytes
        #: How often one attempt may start again after its worker died mid-run before it is failed instead: a job
        #: that gets its worker killed every time (the kernel's out-of-memory killer) must not loop forever.
        self.max_restarts = max_restarts
        #: "active" takes the job's lease (renewed by service/worker/middleware/lease.py), in the same step.
        self.lease_ms = lease_ms
        self.holder = this_process()
        self.outage_grace_s = outage_grace_s
        self.cancel_poll_s = cancel_poll_s
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- sender side -----------------------------------------------------------------------------------------

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        message.options[RECORDED] = 1

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        fields: dict[str, Any] = {}
        if message.options.get("last_error"):
            fields["lastError"] = message.options["last_error"]
        state = JobState.DELAYED if delay else JobState.QUEUED
        if delay:
            # On the same write: when it is due, and what "run now" needs to publish a copy.
            fields.update(delayed_fields(message, self.max_payload_bytes))
        outcome = self.store.transition(
            message.message_id,
            state,
            run=run_of(message),
            retries=retries_of(message),
            fields=fields,
            create=record_fields(message, self.max_payload_bytes),
            token=self._token(message),  # a retry published by a running attempt: only while it holds the job
        )
        if outcome.fenced:
            logger.warning("%s: retry not recorded: this attempt was taken over by attempt %d", message.message_id,
                           outcome.token)  # fmt: skip

    # -- worker side -----------------------------------------------------------------------------------------

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.holder = this_process()  # the forked process's own pid
        self._watcher = threading.Thread(target=self._watch_cancellations, name="cancel-watcher", daemon=True)
        self._watcher.start()
        self._stopping.clear()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stopping.set()  # a write failing now is not retried in the thread: the stop must not wait on Redis

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        reason = envelope.problem(message, self.max_payload_bytes)
        if reason is not None:
            self._reject(message, reason)
        lease = (self.holder, self.lease_ms)
        parent = message.options.get(PARENT_ATTEMPT)
        trace_id = tracing.current_trace_id()  # the attempt's span (service/worker/middleware/tracing.py), when tracing
        fields = {"traceId": trace_id} if trace_id else {}
        outcome = self._patiently(lambda: self._transition(message, JobState.ACTIVE, fields, lease=lease, token=parent))
        if outcome.running:
            self._defer(broker, message, outcome.lease_left_ms + 1000)
        if not outcome.applied:
            # Final already (a redelivery after completion, or cancelled), or a stale copy of an earlier attempt.
            logger.info("skipping %s: job is %s", message.message_id, outcome.why_not)
            raise SkipMessage(f"job is {outcome.why_not}")
        if self.leases is not None:
            self.leases.hold(message.message_id, outcome.token, outcome.asked_at)
        if outcome.restarts > self.max_restarts:
            self._reject(
                message,
                f"the worker running this job died {outcome.restarts} times before it finished (killed by a signal or"
                " the kernel's out-of-memory killer?); not starting it again",
            )
        attempt = retries_of(message) + 1
        current_job.set(JobContext(message.message_id, message.actor_name, q_name(message.queue_name), attempt))
        self.in_hand.activate()

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        flush_progress()
        try:
            self._record_outcome(message, result, exception)
        finally:
            current_job.set(None)  # only now: the outcome's log line still names the job

    def _record_outcome(self, message: Any, result: Any, exception: BaseException | None) -> None:
        if isinstance(exception, LeaseLost):
            return  # nothing to record: the lease middleware sends the message back to RabbitMQ
        if exception is None:
            self._finish(message, JobState.COMPLETED, {"result": to_json(result), "progress": 100})
            # DEBUG: the completion is in the event stream already (`jobs events`); failures and retries log at INFO+.
            logger.debug("job completed", extra={"event": "completed"})
        elif isinstance(exception, JobCancelled):
            self._finish(message, JobState.CANCELLED, {"failedReason": describe(exception)})
        elif message.failed:
            reason = describe(exception)[:2000]
            trace = stored_traceback(exception)
            self._finish(message, JobState.FAILED, {"failedReason": reason, "traceback": trace})
            logger.warning("job failed: %s", reason, extra={"event": "failed"})
        else:
            # The retry middleware has already re-enqueued it; after_enqueue recorded "delayed".
            logger.info("job attempt failed, will retry: %s", describe(exception), extra={"event": "retrying"})

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        current_job.set(None)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _defer(self, broker: dramatiq.Broker, message: Any, delay_ms: int) -> None:
        """A live worker holds this attempt: its message was redelivered (after a broker blip) while it still runs.
        Look again once that lease could have lapsed, rather than run it twice now or drop it (it may yet die)."""
        logger.info("%s is running in another worker; looking again in %d ms", message.message_id, delay_ms)
        broker.enqueue(message, delay=delay_ms)
        raise SkipMessage("running in another worker")

    def _reject(self, message: Any, reason: str) -> None:
        """Fail a message that cannot run as published (any sender can publish anything): recorded, dead-lettered."""
        message.fail()
        self._patiently(lambda: self._transition(message, JobState.FAILED, {"failedReason": reason}))
        logger.warning("rejected %s: %s", message.message_id, reason, extra={"event": "failed"})
        raise SkipMessage(reason)

    def _transition(
        self,
        message: Any,
        state: JobState,
        fields: dict[str, Any],
        lease: tuple[str, int] | None = None,
        token: int | None = None,
    ) -> Transition:
        """Write a transition; only when the record is missing (a foreign sender's job) send the whole record."""
        run, retries, job_id = run_of(message), retries_of(message), message.message_id
        write = functools.partial(
            self.store.transition, job_id, state, run=run, retries=retries, fields=fields, lease=lease, token=token
        )
        if state is JobState.ACTIVE and not message.options.get(RECORDED):
            return write(create=record_fields(message, self.max_payload_bytes))
        outcome = write()
        if outcome.missing:  # recorded by its sender, but pruned or lost since: written whole again
            outcome = write(create=record_fields(message, self.max_payload_bytes))
        return outcome

    def _token(self, message: Any) -> int | None:
        return self.leases.token_of(message.message_id) if self.leases is not None else None

    def _finish(self, message: Any, state: JobState, fields: dict[str, Any]) -> None:
        token = self._token(message)
        outcome = self._patiently(lambda: self._transition(message, state, fields, token=token))
        if outcome.fenced:
            # Another attempt took the job over (this worker lost its lease): that one records the outcome.
            logger.warning("%s not recorded as %s: attempt %s was taken over by attempt %d, which owns the job now",
                           message.message_id, state.value, token, outcome.token)  # fmt: skip
            return
        if not outcome.applied and outcome.state not in FINAL_STATES:
            logger.error("could not record %s as %s: it is %s", message.message_id, state, outcome.why_not)

    def _patiently(self, write: Callable[[], T]) -> T:
        """Retry a store write through a Redis outage: the job waits rather than being lost or misrecorded.
        Past the window (at once while the worker stops) it raises: service/worker/hook_failures.py then keeps the job
        from starting, or keeps its message unacknowledged while it writes the outcome again in the background. Other
        errors (Redis out of memory answers "OOM ...") raise at once, for the same treatment: never taken as done."""
        deadline = time.monotonic() + self.outage_grace_s
        pause = 0.1
        while True:
            try:
                return write()
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                if time.monotonic() > deadline or self._stopping.is_set():
                    raise
                logger.warning("job store unreachable; retrying in %.1fs", pause)
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    def _watch_cancellations(self) -> None:
        # Interrupts running jobs whose cancellation was requested, for jobs that never report progress. Only while
        # the actor runs, never in a hook: a job whose actor has not started yet is looked at again next time.
        while True:
            time.sleep(self.cancel_poll_s)
            for thread_id, entry in self.in_hand.runs().items():
                if entry.interrupted or entry.active_at is None:
                    continue
                try:
                    wanted = self.store.cancel_requested(entry.job_id)
                except redis.RedisError:
                    break
                if wanted and self.in_hand.interrupt(thread_id, entry.job_id, JobCancelled):
                    logger.info("interrupting cancelled job %s", entry.job_id)
