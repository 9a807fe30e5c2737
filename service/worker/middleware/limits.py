"""Limits shared by every worker through Redis, one mechanism for all of them (service/domain/limits.py): per key
(`key_concurrency`, `key_rate_limit`, `throttle`) and per actor (`concurrency_limit`, `rate_limit`, split by a
function such as the webhook kit's destination host), each overridable by JOB_LIMITS.

Before a job starts, one script call takes every limit it is under, or none (lua/limits.lua). A job over a limit
waits: its message goes back to RabbitMQ delayed (a growing backoff with jitter while a slot is busy, until the
window has room for a rate), so it is not run, not failed and uses no attempt; its record shows `delayed`. A throttle
in "drop" mode ends the job `cancelled` ("throttled: ...") instead, before its message is acknowledged. When Redis
cannot be asked, the hook raises and the job does not run (service/worker/hook_failures.py).

A concurrency slot lasts as long as its job's lease (JOB_LEASE_MS): it is renewed where the lease is
(service/worker/middleware/lease.py), so the slot of a worker killed with SIGKILL lapses within the lease, and is
given back as the job ends (its outcome recorded) or is skipped.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Mapping
from typing import Any, NoReturn

import dramatiq
import redis
from dramatiq.middleware import Middleware, SkipMessage

from service.domain import job_key
from service.domain.context import this_process
from service.domain.limits import OPTIONS, SPLIT_BY, InvalidLimit, Kind, Limit, Split, limits_of
from service.store.job_store import JobStore
from service.store.limits import Claim, LimitStore, Slot
from service.worker.middleware.unstarted import cancel_unstarted

logger = logging.getLogger(__name__)

#: Message option: how many times in a row this job waited for a slot (its backoff grows with it).
WAITS = "limit_waits"
#: A job waiting for a concurrency slot looks again after this long at first, doubling per wait up to the maximum.
FIRST_WAIT_MS = 250
MAX_WAIT_MS = 5_000


class Limits(Middleware):
    def __init__(
        self,
        limits: LimitStore,
        store: JobStore,
        *,
        lease_ms: int,
        max_payload_bytes: int,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.limits = limits
        self.store = store
        #: JOB_LEASE_MS: how long a slot outlives its last renewal.
        self.lease_ms = lease_ms
        self.max_payload_bytes = max_payload_bytes
        #: JOB_LIMITS: per actor, options that replace the declared ones.
        self.overrides = overrides or {}
        self.holder = this_process()
        self._by_actor: dict[str, tuple[Limit, ...]] = {}
        self._held: dict[int, list[Slot]] = {}  # worker thread -> the slots its job holds
        self._lock = threading.Lock()

    @property
    def actor_options(self) -> set[str]:
        return set(OPTIONS)

    def before_declare_actor(self, broker: dramatiq.Broker, actor: dramatiq.Actor[Any, Any]) -> None:
        # Checked here, once: a bad value fails the actor's import naming it, not every message.
        try:
            found = limits_of(actor.options, self.overrides.get(actor.actor_name))
        except InvalidLimit as error:
            raise InvalidLimit(f"{actor.actor_name}: {error}") from None
        if found:
            self._by_actor[actor.actor_name] = found
        else:
            self._by_actor.pop(actor.actor_name, None)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.holder = this_process()  # the forked process's own pid: a slot names the process that holds it
        unknown = sorted(set(self.overrides) - set(broker.get_declared_actors()))
        if unknown:
            logger.warning("JOB_LIMITS names actors this worker does not declare: %s", ", ".join(unknown))

    # -- before a job starts --------------------------------------------------------------------------------

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        limits = self._by_actor.get(message.actor_name)
        if not limits:
            return
        claims = [(limit, claim) for limit in limits if (claim := self._claim(broker, limit, message)) is not None]
        if not claims:
            return
        member = f"{self.holder}/{message.message_id}/{uuid.uuid4().hex[:8]}"
        # A Redis error leaves here on purpose: the job does not run unchecked (service/worker/hook_failures.py).
        waits = self.limits.take([claim for _, claim in claims], member)
        if waits is None:
            slots = [(claim.key, member) for _, claim in claims if claim.kind is Kind.CONCURRENCY]
            if slots:
                with self._lock:
                    self._held[threading.get_ident()] = slots
            message.options.pop(WAITS, None)  # a later retry starts waiting afresh
            return
        over = [(limit, wait) for (limit, _), wait in zip(claims, waits, strict=True) if wait != 0]
        dropped = next((limit for limit, _ in over if limit.drops), None)
        if dropped is not None:
            reason = dropped.reason(message.options.get(job_key.OPTION, ""))
            cancel_unstarted(self.store, message, reason, max_payload_bytes=self.max_payload_bytes)
        self._wait(broker, message, over)

    def _claim(self, broker: dramatiq.Broker, limit: Limit, message: Any) -> Claim | None:
        """The limit as this message meets it; None when it does not hold the message (a per-key one, no key)."""
        if limit.split is Split.JOB_KEY:
            key = message.options.get(job_key.OPTION)
            if key is None:
                return None
            name = f"{message.actor_name}:{key}"
        elif limit.split is Split.FUNCTION:
            split_by = broker.get_actor(message.actor_name).options[SPLIT_BY[limit.scope]]
            name = f"{message.actor_name}:{split_by(message)}"
        else:
            name = message.actor_name
        ms = self.lease_ms if limit.kind is Kind.CONCURRENCY else limit.period_ms
        return Claim(limit.scope, name, limit.kind, limit.count, ms)

    def _wait(self, broker: dramatiq.Broker, message: Any, over: list[tuple[Limit, int]]) -> NoReturn:
        """Back to RabbitMQ, delayed: until the latest window has room, or a backoff while a slot is busy."""
        waits = int(message.options.get(WAITS, 0))
        delay = 0.0
        for limit, wait in over:
            if wait < 0:  # no slot free: look again after a backoff that grows, spread so the waiting herd thins out
                delay = max(delay, min(FIRST_WAIT_MS * 2**waits, MAX_WAIT_MS) * random.uniform(0.75, 1.25))
            else:  # the window has room in `wait` ms; the jitter (up to one start's share of the window, growing)
                share = limit.period_ms / limit.count
                delay = max(delay, wait + random.uniform(0, min(share * 2**waits, limit.period_ms)))
        what = ", ".join(limit.describe() for limit, _ in over)
        logger.debug("job %s waits %d ms for its limits (%s)", message.message_id, delay, what)
        broker.enqueue(message.copy(options={WAITS: waits + 1}), delay=max(int(delay), 1))
        raise SkipMessage(f"limited ({what})")

    # -- slots: renewed with the leases, given back as the job ends -------------------------------------------

    def renew(self) -> None:
        """Extend every slot this process's jobs hold by a lease (called where the leases are renewed)."""
        with self._lock:
            slots = [slot for held in self._held.values() for slot in held]
        self.limits.renew(slots, self.lease_ms)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self._release()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._release()

    def _release(self) -> None:
        with self._lock:
            slots = self._held.pop(threading.get_ident(), None)
        if not slots:
            return
        try:
            self.limits.release(slots)
        except redis.RedisError as error:
            logger.warning("limit slots not given back (%s); they lapse within the lease (%d ms)", error, self.lease_ms)
