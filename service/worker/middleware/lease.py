"""A lease per running job, renewed by its worker while it holds the attempt's fencing token; lost, the job stops.

Costs nothing per job: "active" takes the lease and returns the attempt's token (transition.lua), and a thread
extends the leases of every job in hand in one script call every third of `lease_ms`, each only while Redis still
holds this attempt's token (renew_leases.lua). So a job running for longer than a third of `lease_ms` always has a
lease while its worker lives, and cleanup only considers `active` jobs that have not changed for a whole `lease_ms`
(service/kits/maintenance.py).

Fencing: a worker interrupts a job (LeaseLost) when renewal reports its lease lost (another attempt took the job
over), and also when it could not renew for most of `lease_ms` (Redis away): by its own clock, a margin before the
lease can lapse in Redis, so a redelivered copy never starts while the original still runs. An interrupted attempt
records nothing and uses no retry: its message goes back to RabbitMQ (this hook raises) and its lease is given back
as soon as Redis answers, so the copy starts without waiting and without counting as the restart of a dead worker.
Whatever the interruption misses (a thread stuck in a system call), the token still fences: a superseded attempt's
outcome is never recorded (service/worker/middleware/status.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware

from service.domain.context import this_process
from service.domain.errors import AttemptAbandoned, LeaseLost
from service.store.job_store import HeldLease, JobStore
from service.store.record_fields import PARENT_ATTEMPT
from service.worker.middleware.in_hand import JobsInHand

logger = logging.getLogger(__name__)


@dataclass
class Held:
    job_id: str
    token: int
    granted: float  #: time.monotonic() no later than the write that last set or extended the lease in Redis
    lost: str = ""  #: why the lease is lost ("" while held)
    interrupted: bool = False
    give_back: bool = False  #: the attempt ends with no outcome: give the lease back rather than let it lapse


class JobLease(Middleware):
    """Keeps `jobs:lease:<job id>` alive for each job this process is running, and fences the jobs that lose it.
    A running job's lease hangs on its entry in the jobs in hand (service/worker/middleware/in_hand.py)."""

    def __init__(self, store: JobStore, in_hand: JobsInHand, *, lease_ms: int) -> None:
        self.store = store
        self.in_hand = in_hand
        self.lease_ms = lease_ms
        #: A job whose lease was not extended for this long is interrupted: a sixth of the lease before it can
        #: lapse in Redis (renewal runs every third, so two renewals in a row failed).
        self.fence_after_s = lease_ms * 5 / 6 / 1000
        self.holder = this_process()
        self._kept: dict[str, Held] = {}  # job id -> lease kept for an outcome not recorded yet (hook_failures.py)
        self._given_back: list[HeldLease] = []  # leases of interrupted attempts, given back at the next renewal
        self._lock = threading.Lock()  # for the two above, which change only on rare paths
        self._stop = threading.Event()
        #: Called at every renewal, after the leases: what must live exactly as long as its job's lease (the limits'
        #: concurrency slots, service/worker/middleware/limits.py).
        self.renewed_with: list[Callable[[], None]] = []

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.holder = this_process()  # the forked process's own pid
        self._stop.clear()
        threading.Thread(target=self._renew_forever, name="job-leases", daemon=True).start()
        threading.Thread(target=self._fence_forever, name="job-fences", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()

    # -- what the status middleware tells and asks ----------------------------------------------------------

    def hold(self, job_id: str, token: int, granted: float) -> None:
        """This thread's job took its lease with fencing token `token`, by a write asked for at `granted`."""
        entry = self.in_hand.mine()
        if entry is not None and entry.job_id == job_id:
            entry.lease = Held(job_id, token, granted)

    def token_of(self, job_id: str) -> int | None:
        """The fencing token of `job_id` if this thread runs it, else None."""
        held = self._mine(job_id)
        if held is None:
            with self._lock:
                held = self._kept.get(job_id)  # its outcome is being written again by another thread
        return held.token if held is not None else None

    def _mine(self, job_id: str) -> Held | None:
        entry = self.in_hand.mine()
        held = entry.lease if entry is not None else None
        return held if held is not None and held.job_id == job_id else None

    def give_back(self, job_id: str) -> None:
        """This thread's attempt of `job_id` ends with no outcome and its message goes back to RabbitMQ (a retry
        that could not be published): its lease is given back, so the redelivered copy need not wait for it to lapse
        and is not counted as the restart of a worker that died."""
        held = self._mine(job_id)
        if held is not None:
            held.give_back = True

    def keep(self, job_id: str) -> None:
        """Go on renewing the lease this thread's job holds after the thread moves on: its outcome is not recorded
        yet, and the message's redelivered copy must wait for it rather than run the job again."""
        held = self._mine(job_id)
        if held is not None:
            with self._lock:
                self._kept[job_id] = held

    def let_go(self, job_id: str) -> None:
        with self._lock:
            self._kept.pop(job_id, None)

    # -- hooks ----------------------------------------------------------------------------------------------

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        # A retry (or a requeue) published by a running attempt carries its token: should that attempt have been
        # taken over meanwhile, the retry must not start alongside the attempt that took over (transition.lua).
        # A message published by no attempt of this process keeps what it carries: a delayed retry coming due is
        # moved from its delay queue by the consumer thread, and its parent's token must travel on with it. A stale
        # token is harmless: transition.lua checks it only for a retry ahead of the record in the same run.
        token = self.token_of(message.message_id)
        if token is not None:
            message.options[PARENT_ATTEMPT] = token

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        held = self._release()
        lost = isinstance(exception, LeaseLost)
        if held is not None and (lost or held.give_back):
            with self._lock:
                self._given_back.append(HeldLease(held.job_id, held.token))
        if lost:
            # Not acknowledged: the message goes back to RabbitMQ, for the attempt that holds the job or takes it.
            raise AttemptAbandoned(f"job {message.message_id} lost its lease; its message goes back to RabbitMQ")

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._release()

    def _release(self) -> Held | None:
        # Renewal stops here, right after the outcome's write (which deleted the key): renewing it later would find
        # it gone and report the lease lost. The key of a job with no outcome is left to lapse: deleting it would
        # cost a round trip per job, and cleanup only looks at active jobs.
        entry = self.in_hand.mine()
        if entry is None:
            return None
        held, entry.lease = entry.lease, None
        return held

    # -- renewal and fencing --------------------------------------------------------------------------------

    def renew(self) -> None:
        in_hand = [e.lease for e in self.in_hand.entries()]
        with self._lock:
            # By identity: a lease kept for its outcome may still hang on its entry too.
            held = list({id(h): h for h in [*in_hand, *self._kept.values()] if h is not None and not h.lost}.values())
            given_back = list(self._given_back)
        if not held and not given_back:
            return
        asked = time.monotonic()
        leases = [HeldLease(h.job_id, h.token) for h in held]
        lost = self.store.renew_leases(self.holder, self.lease_ms, leases, given_back)
        with self._lock:
            self._given_back = [g for g in self._given_back if g not in given_back]
            for h in held:
                if h.job_id in lost:
                    h.lost = "another attempt holds it now, or it lapsed"
                else:
                    h.granted = max(h.granted, asked)
        for h in held:
            if h.lost:
                logger.warning("job %s lost its lease (%s): interrupting it; it records nothing", h.job_id, h.lost)
        self.fence()

    def fence(self) -> None:
        """Interrupt the jobs whose lease is lost or could lapse soon (not extended for `fence_after_s`)."""
        now = time.monotonic()
        for entry in self.in_hand.entries():
            h = entry.lease
            if h is None:
                continue
            if not h.lost and now - h.granted >= self.fence_after_s:
                h.lost = f"not extended for {now - h.granted:.1f}s"
                logger.warning(
                    "job %s: its lease could not be extended for %.1fs (job store unreachable?): interrupting it"
                    " before the lease can lapse (%d ms); its message goes back to RabbitMQ",
                    h.job_id,
                    now - h.granted,
                    self.lease_ms,
                )
            # Asked again at every tick until it lands: the job's function may not have started yet.
            if h.lost and not h.interrupted and self.in_hand.interrupt(entry.thread_id, h.job_id, LeaseLost):
                h.interrupted = True

    def _renew_forever(self) -> None:
        while not self._stop.wait(self.lease_ms / 3000):
            try:
                self.renew()
            except redis.RedisError:
                logger.warning("job leases not renewed: job store unreachable")
            for renew in self.renewed_with:
                try:
                    renew()
                except redis.RedisError:
                    logger.warning("%s not renewed: job store unreachable", getattr(renew, "__qualname__", renew))

    def _fence_forever(self) -> None:
        tick = min(self.lease_ms / 20_000, 0.25)
        while not self._stop.wait(tick):
            try:
                self.fence()
            except Exception:  # a bug here must not end fencing for every later job
                logger.exception("lease fencing check failed")
