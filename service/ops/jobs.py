"""The service layer: enqueue, read, list, wait for, cancel and retry jobs, and which jobs and queues are declared.
The API, CLI and dashboard call this."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import functools
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import ActorNotFound
from pydantic import ValidationError

from service import tracing
from service.domain import flow_control
from service.domain.clock import now_ms
from service.domain.errors import UnknownQueue
from service.domain.job_filter import JobFilter, parse_cursor
from service.domain.records import JobRecord
from service.domain.states import BROKER_PRIORITY, FINAL_STATES, RETRYABLE_STATES, JobState, Priority
from service.domain.typed_job import TypedJob, is_typed_job
from service.ops.flow import EnqueueFlow, rules_of
from service.ops.unavailable import (
    BROKER_ERRORS as BROKER_ERRORS,  # their old home: other modules import them from here
)
from service.ops.unavailable import STORE_ERRORS as STORE_ERRORS
from service.ops.unavailable import Unavailable as Unavailable
from service.ops.unavailable import broker_call, store_call
from service.rabbit.link import BrokerUnreachable, RabbitLink, shared_link
from service.rabbit.publisher import Publisher
from service.settings import get_settings
from service.store.job_store import CancelOutcome, JobStore, Page
from service.store.record_fields import delayed_fields, record_fields

T = TypeVar("T")
logger = logging.getLogger(__name__)

#: An Idempotency-Key stays claimed this long after its enqueue was confirmed (the contract's 24 h).
IDEMPOTENCY_TTL_S = 86_400
#: A claim not confirmed yet lapses after this long: longer than any enqueue takes (Redis's 5 s timeout and the
#: RabbitMQ link's deadline), so the key of a request whose process died mid-way is free again for the retry.
IDEMPOTENCY_PENDING_S = 30
#: How often a request waiting on another with the same key looks again.
IDEMPOTENCY_POLL_S = 0.02


class UnknownActor(LookupError):
    pass


class JobNotFound(LookupError):
    pass


class Conflict(Exception):
    """The job is not in a state that allows this (cancel a finished job, retry a completed one)."""


class KeyHeld(Conflict):
    """A retry of a singleton job whose key another job holds (queued, delayed or running) now."""


class IdempotencyMismatch(Exception):
    """The same Idempotency-Key was used before with a different payload."""


class EnqueueInProgress(Exception):
    """Another request with the same Idempotency-Key is still being published; the client should try again."""


@dataclass(frozen=True)
class Enqueued:
    job_id: str
    state: JobState
    duplicate: bool = False


class Jobs:
    """One object per process, built from the broker and the store that the composition root made."""

    def __init__(self, broker: RabbitmqBroker, store: JobStore, link: RabbitLink | None = None) -> None:
        self.broker = broker
        self.store = store
        #: Publishing and queue figures go through a link with a deadline, so callers get an answer in seconds.
        self.link = link or shared_link(broker)
        self.publisher = Publisher(self.link)
        #: Singleton claims and debounced sends (service/ops/flow.py).
        self.flow = EnqueueFlow(store)
        self.max_payload_bytes = get_settings().max_payload_bytes
        #: How long a request waits for another with the same Idempotency-Key to be confirmed: that one's publish
        #: ends within the link's deadline, its record write within Redis's timeout.
        self.idempotency_wait_s = 2 * self.link.deadline_s
        #: Runs the blocking calls of async callers; as many threads as a sync route would have had from anyio.
        self._callers = ThreadPoolExecutor(max_workers=40, thread_name_prefix="jobs-async")

    # -- health ----------------------------------------------------------------------------------------------

    def unreachable(self) -> list[str]:
        """Which of "rabbitmq" and "redis" do not answer right now."""
        down = []
        try:
            self.store.client.ping()
        except STORE_ERRORS:
            down.append("redis")
        try:
            # Through the link: one connection attempt and a deadline, so a probe answers within seconds.
            self.link.run(lambda link: link.channel().connection.process_data_events(0))
        except BrokerUnreachable:
            down.append("rabbitmq")
        return down

    # -- actors ----------------------------------------------------------------------------------------------

    def actor(self, name: str) -> TypedJob:
        try:
            actor = self.broker.get_actor(name)
        except ActorNotFound:
            raise UnknownActor(name) from None
        if not is_typed_job(actor):
            raise UnknownActor(name)
        return actor

    def queues_of_actors(self) -> dict[str, str]:
        """Each declared job's queue, by actor name, in name order. Read afresh: a module may declare more."""
        declared = ((name, self.broker.get_actor(name)) for name in sorted(self.broker.get_declared_actors()))
        return {name: actor.queue_name for name, actor in declared if is_typed_job(actor)}

    def actor_names(self) -> list[str]:
        return list(self.queues_of_actors())

    def queue_names(self) -> list[str]:
        return sorted(set(self.queues_of_actors().values()))

    def actors_of(self, queue: str) -> tuple[str, ...]:
        """The declared jobs whose messages go to `queue`; raises UnknownQueue when none does."""
        actors = tuple(name for name, its_queue in self.queues_of_actors().items() if its_queue == queue)
        if not actors:
            raise UnknownQueue(queue)
        return actors

    def validate(self, actor_name: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Raises UnknownActor, or pydantic's ValidationError naming the fields."""
        return self.actor(actor_name).validate(payload)

    # -- enqueue ---------------------------------------------------------------------------------------------

    def enqueue(
        self,
        actor_name: str,
        payload: dict[str, Any],
        *,
        priority: Priority | None = None,
        delay_ms: int | None = None,
        idempotency_key: str | None = None,
        key: str | None = None,
    ) -> Enqueued:
        """Recorded and confirmed by RabbitMQ, or Unavailable naming the server that failed and nothing left behind.
        `key`: the job's key, else the actor's key field of the payload (service/domain/job_key.py)."""
        actor = self.actor(actor_name)
        normalised = actor.validate(payload)
        if not idempotency_key:
            return self._enqueue_new(actor, str(uuid.uuid4()), normalised, priority, delay_ms, None, key)
        claim_key = f"{actor_name}:{idempotency_key}"
        give_up_at = time.monotonic() + self.idempotency_wait_s
        while True:
            job_id = str(uuid.uuid4())
            claim = store_call(
                functools.partial(
                    self.store.claim_idempotency_key, claim_key, job_id, normalised, pending_s=IDEMPOTENCY_PENDING_S
                )
            )
            if not claim.same_payload:
                raise IdempotencyMismatch(idempotency_key)
            if claim.job_id == job_id:
                return self._enqueue_claimed(
                    claim_key, actor, job_id, normalised, priority, delay_ms, idempotency_key, key
                )
            if not claim.pending:
                state = store_call(functools.partial(self.store.state_of, claim.job_id))
                return Enqueued(claim.job_id, JobState(state) if state else JobState.QUEUED, duplicate=True)
            # The first request with this key is still publishing: its id is not worth handing out until RabbitMQ
            # confirmed it. If it fails, its key is released and this request claims the key itself.
            if time.monotonic() > give_up_at:
                raise EnqueueInProgress(idempotency_key)
            time.sleep(IDEMPOTENCY_POLL_S)

    def _enqueue_claimed(
        self,
        key: str,
        actor: TypedJob,
        job_id: str,
        payload: dict[str, Any],
        priority: Priority | None,
        delay_ms: int | None,
        idempotency_key: str,
        job_key: str | None,
    ) -> Enqueued:
        try:
            enqueued = self._enqueue_new(actor, job_id, payload, priority, delay_ms, idempotency_key, job_key)
        except BaseException:
            self._quietly(lambda: self.store.release_idempotency_key(key, job_id))
            raise
        if enqueued.duplicate:
            # Refused: its singleton key is held by another job. The key is not kept for a job that does not exist,
            # so the same request again is answered afresh (with the holder, or a job of its own once it is free).
            self._quietly(lambda: self.store.release_idempotency_key(key, job_id))
            return enqueued
        try:
            self.store.confirm_idempotency_key(key, job_id, ttl_s=IDEMPOTENCY_TTL_S)
        except Exception:
            # The job is recorded and published, so it is answered; only its key lapses early (with the pending
            # claim, in IDEMPOTENCY_PENDING_S), after which the same key would enqueue again.
            logger.warning("job %s: its Idempotency-Key could not be kept for 24 h", job_id, exc_info=True)
        return enqueued

    def _enqueue_new(
        self,
        actor: TypedJob,
        job_id: str,
        payload: dict[str, Any],
        priority: Priority | None,
        delay_ms: int | None,
        idempotency_key: str | None,
        job_key: str | None = None,
    ) -> Enqueued:
        """The record first, then the message: a 202 always finds its record (never a 404 for a real job), and a
        Redis that cannot take the record (away, full, read-only) stops the enqueue before anything is published. A
        message RabbitMQ does not confirm takes its record away again, so no record waits for a message that does
        not exist."""
        message = self._message(actor, job_id, payload, priority, idempotency_key, job_key)
        rules = rules_of(actor)
        (holder,) = self.flow.claim(self.flow.claims(rules, [message]), [message])
        if holder is not None:  # a singleton whose key another job holds: answered as a duplicate
            return Enqueued(holder, self.flow.state_of(holder), duplicate=True)
        delay_ms = self.flow.stamp(rules, message, delay_ms)
        state = JobState.DELAYED if delay_ms else JobState.QUEUED
        record = record_fields(message, self.max_payload_bytes)
        if delay_ms:  # when it is due, as the worker's "delayed" write records it (the publish's eta is ms later)
            record.update(delayed_fields(message.copy(options={"eta": now_ms() + delay_ms}), self.max_payload_bytes))
        try:
            store_call(lambda: self.store.transition(job_id, state, create=record))
        except BaseException:
            self._quietly(lambda: self.store.discard(job_id))  # a write that timed out may have been applied
            self.flow.release([message])
            raise
        try:
            broker_call(lambda: self.publisher.publish(message, delay_ms=delay_ms or None))
        except BaseException:
            self._unrecord([job_id])
            self.flow.release([message])
            raise
        self.flow.note([message], delay_ms or 0)
        return Enqueued(job_id, state)

    def _unrecord(self, job_ids: builtins.list[str]) -> None:
        """Remove the records of jobs whose messages were not published (those a worker took meanwhile stay)."""
        try:
            self.store.discard_many(job_ids)
        except Exception as error:
            # Redis failed too, between two calls: these records would stay queued with no message to move them.
            logger.error(
                "%d job(s) recorded but not published, and their records could not be removed (%s): cancel them "
                "with `jobs cancel ID`: %s",
                len(job_ids),
                error,
                " ".join(job_ids[:20]),
            )

    async def enqueue_async(self, actor_name: str, payload: dict[str, Any], **options: Any) -> Enqueued:
        return await self.in_thread(functools.partial(self.enqueue, actor_name, payload, **options))

    async def enqueue_batch_async(self, actor_name: str, payloads: list[dict[str, Any]], **options: Any) -> list[str]:
        return await self.in_thread(functools.partial(self.enqueue_batch, actor_name, payloads, **options))

    async def get_async(self, job_id: str) -> JobRecord:
        return await self.in_thread(functools.partial(self.get, job_id))

    async def in_thread(self, call: Callable[[], T]) -> T:
        """For async callers (the API's busiest routes): run a blocking call on a thread of this object's pool, a
        lighter hop than a sync FastAPI route's (anyio's, with its capacity limiter and cancel scopes, took a tenth
        of the server's CPU)."""
        if tracing.is_on():  # the request's span goes along, so the message carries its trace context
            call = functools.partial(contextvars.copy_context().run, call)
        return await asyncio.get_running_loop().run_in_executor(self._callers, call)

    def enqueue_batch(
        self,
        actor_name: str,
        payloads: list[dict[str, Any]],
        *,
        priority: Priority | None = None,
        key: str | None = None,
    ) -> list[str]:
        """All or nothing for validation: a bad item raises before any is published."""
        actor = self.actor(actor_name)
        errors: list[str] = []
        invalid: list[tuple[int, ValidationError]] = []
        normalised: list[dict[str, Any]] = []
        for i, payload in enumerate(payloads):
            try:
                normalised.append(actor.validate(payload))
            except ValidationError as error:
                invalid.append((i, error))
                errors.extend(f"[{i}].{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        if errors:
            raise BatchInvalid(errors, invalid)
        messages = [self._message(actor, str(uuid.uuid4()), payload, priority, None, key) for payload in normalised]
        # A singleton's item whose key another job holds is not enqueued: its place in the answer has that job's id.
        rules = rules_of(actor)
        holders = self.flow.claim(self.flow.claims(rules, messages), messages)
        fresh = [m for m, holder in zip(messages, holders, strict=True) if holder is None]
        delay_ms = None
        for message in fresh:
            delay_ms = self.flow.stamp(rules, message, None)  # debounced: each send delayed alike
        if fresh:
            self._enqueue_many(fresh, delay_ms)
        return [holder or m.message_id for m, holder in zip(messages, holders, strict=True)]

    def _enqueue_many(self, messages: builtins.list[dramatiq.Message[Any]], delay_ms: int | None) -> None:
        # As one job: every record first, then the messages in one transaction, or no record left.
        state = JobState.DELAYED if delay_ms else JobState.QUEUED
        records = []
        for m in messages:
            fields = record_fields(m, self.max_payload_bytes)
            if delay_ms:
                fields.update(delayed_fields(m.copy(options={"eta": now_ms() + delay_ms}), self.max_payload_bytes))
            records.append((m.message_id, state, fields))
        try:
            store_call(lambda: self.store.record_enqueued(records))
        except BaseException:
            self._quietly(lambda: self.store.discard_many([m.message_id for m in messages]))  # some may be written
            self.flow.release(messages)
            raise
        try:
            broker_call(lambda: self.publisher.publish_batch(messages, delay_ms=delay_ms))
        except BaseException:
            self._unrecord([m.message_id for m in messages])
            self.flow.release(messages)
            raise
        self.flow.note(messages, delay_ms or 0)

    def _message(
        self,
        actor: TypedJob,
        job_id: str,
        payload: dict[str, Any],
        priority: Priority | None,
        idempotency_key: str | None,
        job_key: str | None = None,
    ) -> dramatiq.Message[Any]:
        options: dict[str, Any] = {}
        if job_key is not None:
            options["key"] = job_key  # checked, with the actor's key field, as the message is built
        if priority is not None:
            options["broker_priority"] = BROKER_PRIORITY[priority]
        if idempotency_key:
            options["idempotency_key"] = idempotency_key
        # Here rather than in the enqueue hook: the record, written before the publish, keeps the trace id.
        options.update(tracing.current_options())
        return actor.message_of(payload, **options).copy(message_id=job_id)  # the payload was validated already

    # -- read ------------------------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord:
        record = self._store_call(lambda: self.store.get(job_id))
        if record is None:
            raise JobNotFound(job_id)
        return record

    def list(
        self,
        *,
        state: JobState | None = None,
        actor: str | None = None,
        key: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        return self.search(JobFilter(key=key, actor=actor, state=state), limit=limit, cursor=cursor)

    def search(self, flt: JobFilter, *, limit: int = 50, cursor: str | None = None) -> Page:
        """Newest first; a page examines a bounded number of jobs, so it may come back short with a `next` cursor.
        Raises InvalidFilter for a cursor no page gave."""
        parse_cursor(cursor)
        return self._store_call(lambda: self.store.search(flt, limit=limit, cursor=cursor))

    def wait(self, job_id: str, timeout_s: float = 30.0, poll_s: float = 0.05) -> JobRecord:
        """Block until the job is completed, failed or cancelled. Raises TimeoutError with the last record seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            record = store_call(lambda: self.store.get(job_id))
            if record is not None and record.state in FINAL_STATES:
                return record
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {record.state if record else 'unknown'}")
            time.sleep(poll_s)

    # -- change ----------------------------------------------------------------------------------------------

    def cancel(self, job_id: str) -> CancelOutcome:
        """Returns CANCELLED or CANCELLING (active: asked to stop). Raises JobNotFound or Conflict."""
        outcome = self._store_call(lambda: self.store.cancel(job_id))
        if outcome is CancelOutcome.MISSING:
            raise JobNotFound(job_id)
        if outcome not in (CancelOutcome.CANCELLED, CancelOutcome.CANCELLING):
            raise Conflict(f"job is {outcome}")
        return outcome

    def retry(self, job_id: str) -> JobRecord:
        """Run a failed or cancelled job again, under the same id, keeping its history."""
        record = self.get(job_id)
        if record.state not in RETRYABLE_STATES:
            raise Conflict(f"job is {record.state}; only failed or cancelled jobs can be retried")
        actor = self.actor(record.actor)
        # A singleton job takes its key's claim again, in the same step: refused while another job holds it.
        claim = rules_of(actor).claim_name(actor.actor_name, record.key)
        pending_ms = flow_control.CLAIM_PENDING_MS
        reopened = self._store_call(lambda: self.store.reopen(job_id, claim=claim, pending_ms=pending_ms))
        if reopened.blocked_by == "singleton":
            raise KeyHeld(flow_control.singleton_reason(reopened.holder or "?", record.key or ""))
        if reopened.run is None:
            raise Conflict(f"job is {reopened.blocked_by}; only failed or cancelled jobs can be retried")
        run = reopened.run
        message = self.run_message(job_id, actor, record.data, run, record.priority, record.key, claim)
        try:
            broker_call(lambda: self.publisher.publish(message))
        except BaseException:
            # Nothing was published: put the record back as it was rather than leave it queued forever.
            restore = {"failedReason": record.failedReason or ""}
            self._quietly(lambda: self.store.transition(job_id, record.state, run=run, fields=restore))
            raise
        return self.get(job_id)

    @staticmethod
    def run_message(
        job_id: str,
        actor: TypedJob,
        data: dict[str, Any],
        run: int,
        priority: str,
        key: str | None,
        claim: str | None = None,
    ) -> dramatiq.Message[Any]:
        """The message of a job's run `run` (a retry by hand): the same id, payload, priority and key; `claim`, the
        singleton claim its reopen took again (without it, the worker takes the claim as the job starts)."""
        options: dict[str, Any] = {"job_run": run, "broker_priority": BROKER_PRIORITY[Priority(priority)]}
        if key is not None:
            options["key"] = key
        if claim is not None:
            options[flow_control.CLAIM] = claim
        return dramatiq.Message(
            queue_name=actor.queue_name,
            actor_name=actor.actor_name,
            args=(),
            kwargs=data,
            options=options,
            message_id=job_id,
        )

    # -- plumbing --------------------------------------------------------------------------------------------

    @staticmethod
    def _store_call(call: Callable[[], T]) -> T:
        return store_call(call)

    @staticmethod
    def _quietly(call: Callable[[], object]) -> None:
        with contextlib.suppress(Exception):
            call()


class BatchInvalid(ValueError):
    def __init__(self, errors: list[str], items: list[tuple[int, ValidationError]] | None = None) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors
        #: (index in the batch, its validation error), for callers that name fields themselves.
        self.items = items or []
