"""One policy for middleware hooks that fail: a job whose checks cannot be made does not run, and a message whose
outcome is not recorded is not acknowledged.

Dramatiq logs and swallows an exception from a hook, then runs the job (before) or acknowledges its message (after)
as if the hook had worked. GuardedRabbitmqBroker sends every failure of a "process_message" hook here instead:
- before (a store write that failed after its patient retries, a limit that cannot reach Redis, a deferral that
  could not be published...): the job does not run. Its message is parked and handed back to RabbitMQ after a
  backoff, unacknowledged; every middleware gets after_skip_message as for any skip.
- after, in a middleware that records the outcome (the status middleware), failing on the store (unreachable, or
  "OOM ..."): the message is withheld from Dramatiq's
  acknowledgement and the job's lease stays held, while a background thread calls that hook again until the store
  takes the outcome; only then is the message acknowledged (dead-lettered, for a failed job), from its connection's
  thread. The worker thread is free meanwhile. Should that connection close first, RabbitMQ redelivers the message
  and the copy finds the outcome recorded (or the job still `active` under a held lease, and waits).
- after, in any other case (a lost lease, a retry that could not be published, a bug...): the message goes back to
  RabbitMQ at once, unacknowledged, and the job runs again.
A process that dies (or stops) with outcomes unwritten leaves their messages unacknowledged: RabbitMQ redelivers
them, so a job may run again (at least once), but no record is left `active` with its message gone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import redis
from dramatiq.middleware import Middleware, MiddlewareError, SkipMessage

from service.rabbit.link import ServiceBroker
from service.worker.middleware.parking import ParkingLot, Ticket

logger = logging.getLogger(__name__)

#: A message whose checks failed comes back after this long at first, doubling per failure in a row up to the max.
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 5.0


class KeepsLeases(Protocol):
    """What the lease middleware offers for an outcome still to be recorded (service/worker/middleware/lease.py)."""

    def keep(self, job_id: str) -> None:
        """Go on renewing the lease this thread's job holds after its thread moves on."""

    def let_go(self, job_id: str) -> None:
        """Stop renewing a lease kept by `keep`."""


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]


@dataclass
class _Pending:
    """An outcome the store has not taken yet, and the message waiting for it."""

    middleware: Middleware
    message: Any
    outcome: dict[str, Any]  #: the after hook's keyword arguments: result= or exception=
    ticket: Ticket
    since: float = field(default_factory=time.monotonic)
    tries: int = 1


class HookFailures:
    """Decides what a failed hook means for its message; see the module's docstring."""

    def __init__(
        self,
        parking: ParkingLot,
        *,
        record_outcome: Sequence[Middleware] = (),
        leases: KeepsLeases | None = None,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self.parking = parking
        #: Middlewares whose after hook records the outcome, so is called again until it succeeds.
        self.record_outcome = list(record_outcome)
        self.leases = leases
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.broker: Any = None
        self.worker: Any = None
        self._failures_in_a_row = 0
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._keeper: threading.Thread | None = None

    def bind(self, broker: Any, worker: Any) -> None:
        """Called as the worker boots (in the forked process): parking needs the worker's consumers."""
        self.broker = broker
        self.worker = worker
        with self._lock:
            self._pending = []
            self._keeper = None

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    # -- before ---------------------------------------------------------------------------------------------

    def succeeded(self) -> None:
        self._failures_in_a_row = 0

    def before_failed(self, middleware: Middleware, message: Any, error: Exception) -> NoReturn:
        self._failures_in_a_row += 1
        delay = min(self.first_backoff_s * 2 ** (self._failures_in_a_row - 1), self.max_backoff_s)
        logger.warning(
            "job %s not started: a check could not be made (%s in %s); its message goes back to RabbitMQ in %.1fs",
            message.message_id,
            _describe(error),
            type(middleware).__name__,
            delay,
        )
        why = f"a check could not be made: {_describe(error)}"
        self.parking.park(self.worker, message, why, release_in_s=delay)
        raise SkipMessage(why)  # not a RabbitMQ delivery (parking let it through): still, the job does not run

    # -- after ----------------------------------------------------------------------------------------------

    def after_failed(self, middleware: Middleware, message: Any, error: Exception) -> None:
        """Called at once, while the remaining after hooks have not run yet (the lease's among them)."""
        if self._retried(middleware, error) and self.leases is not None:
            self.leases.keep(message.message_id)

    def _retried(self, middleware: Middleware, error: Exception) -> bool:
        # Only a store that could not be written is worth waiting for; a bug would fail the same way for ever, and
        # would leave the job `active` under a lease kept alive: its message goes back to RabbitMQ instead.
        return middleware in self.record_outcome and isinstance(error, redis.RedisError)

    def conclude(self, message: Any, outcome: dict[str, Any], failures: list[tuple[Middleware, Exception]]) -> None:
        """After every after hook ran: withhold the message, then retry its outcome or hand it back."""
        retried = [(m, e) for m, e in failures if self._retried(m, e)]
        others = [(m, e) for m, e in failures if not self._retried(m, e)]
        ticket = self.parking.withhold(self.worker, message)
        if others or ticket is None:
            if retried and self.leases is not None:
                self.leases.let_go(message.message_id)
            middleware, error = (others or retried)[0]
            if ticket is None:
                logger.error("job %s: %s failed after it ran (%s)", message.message_id, type(middleware).__name__,
                             _describe(error))  # fmt: skip
                return
            self.parking.requeue(ticket)
            logger.warning(
                "job %s: %s failed after it ran (%s); its message goes back to RabbitMQ, unacknowledged",
                message.message_id,
                type(middleware).__name__,
                _describe(error),
            )
            return
        middleware, error = retried[0]
        logger.warning(
            "job %s: its outcome is not recorded yet (%s); its message stays unacknowledged until it is",
            message.message_id,
            _describe(error),
        )
        with self._lock:
            self._pending.append(_Pending(middleware, message, outcome, ticket))
            if self._keeper is None:
                self._keeper = threading.Thread(target=self._keep_trying, name="outcome-keeper", daemon=True)
                self._keeper.start()
        self._wake.set()

    def _keep_trying(self) -> None:
        pause = self.first_backoff_s
        while True:
            self._wake.wait(pause)
            self._wake.clear()
            with self._lock:
                pending = list(self._pending)
            recorded_any = False
            for item in pending:
                if self._record(item):
                    recorded_any = True
                    with self._lock:
                        self._pending.remove(item)
            pause = self.first_backoff_s if recorded_any else min(pause * 2, self.max_backoff_s)

    def _record(self, item: _Pending) -> bool:
        """Whether the item is done with: recorded and settled, or handed back to RabbitMQ."""
        try:
            item.middleware.after_process_message(self.broker, item.message, **item.outcome)
        except Exception as error:
            item.tries += 1
            if not isinstance(error, redis.RedisError):  # not the store this time: waiting will not help
                if self.leases is not None:
                    self.leases.let_go(item.message.message_id)
                self.parking.requeue(item.ticket)
                logger.warning("job %s: outcome not recorded (%s); its message goes back to RabbitMQ, unacknowledged",
                               item.message.message_id, _describe(error))  # fmt: skip
                return True
            if item.tries % 10 == 0:
                logger.warning("job %s: outcome still not recorded after %d tries (%s)", item.message.message_id,
                               item.tries, _describe(error))  # fmt: skip
            return False
        if self.leases is not None:
            self.leases.let_go(item.message.message_id)
        settled = self.parking.settle(item.ticket, dead_letter=bool(item.message.failed))
        logger.info(
            "job %s: outcome recorded after %.1fs; message %s",
            item.message.message_id,
            time.monotonic() - item.since,
            "settled" if settled else "left to RabbitMQ to redeliver (its channel closed meanwhile)",
        )
        return True


class GuardedRabbitmqBroker(ServiceBroker):
    """The service's RabbitMQ broker (service/rabbit/link.py), with failures of "process_message" hooks sent to a
    HookFailures policy."""

    hook_failures: HookFailures | None = None
    _hook_lists: dict[str, list[tuple[Middleware, Callable[..., None]]]]
    _hooks_built_for: tuple[Middleware, ...] | None = None

    def _hooks(self, name: str) -> list[tuple[Middleware, Callable[..., None]]]:
        """The middlewares that define hook `name` themselves, in stack order, with the bound hook. Dramatiq calls
        every middleware's hook, most of them Middleware's empty ones: twenty calls a signal, several signals a job."""
        stack = tuple(self.middleware)
        if stack != self._hooks_built_for:  # a middleware added or taken out since: look again
            self._hook_lists, self._hooks_built_for = {}, stack
        hooks = self._hook_lists.get(name)
        if hooks is None:
            empty = getattr(Middleware, name, None)
            hooks = [(m, getattr(m, name)) for m in stack if getattr(type(m), name, None) is not empty]
            self._hook_lists[name] = hooks
        return hooks

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        policy = self.hook_failures
        hooks = self._hooks("before_" + signal)
        if signal != "process_message" or policy is None:
            for middleware, hook in hooks:
                try:
                    hook(self, *args, **kwargs)
                except MiddlewareError:
                    raise
                except Exception:
                    self.logger.critical("Unexpected failure in before_%s of %r.", signal, middleware, exc_info=True)
            return
        message = args[0]
        for middleware, hook in hooks:
            try:
                hook(self, message)
            except MiddlewareError:
                raise
            except Exception as error:
                policy.before_failed(middleware, message, error)
        policy.succeeded()

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        policy = self.hook_failures
        if signal == "worker_boot" and policy is not None:
            policy.bind(self, args[0])
        hooks = self._hooks("after_" + signal)
        if signal != "process_message" or policy is None:
            for middleware, hook in reversed(hooks):
                try:
                    hook(self, *args, **kwargs)
                except Exception:
                    self.logger.critical("Unexpected failure in after_%s of %r.", signal, middleware, exc_info=True)
            return
        message = args[0]
        failures: list[tuple[Middleware, Exception]] = []
        for middleware, hook in reversed(hooks):
            try:
                hook(self, message, **kwargs)
            except Exception as error:
                failures.append((middleware, error))
                policy.after_failed(middleware, message, error)
        if failures:
            policy.conclude(message, kwargs, failures)
