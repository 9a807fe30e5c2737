"""Retries with a fixed schedule or exponential backoff, per actor, defaulting to the settings."""

from __future__ import annotations

import logging
import random
import traceback
from typing import Any, Protocol

import dramatiq
from dramatiq.middleware import Middleware, Shutdown

from service import logs
from service.domain.errors import InvalidPayload, JobCancelled, LeaseLost, PermanentError

logger = logging.getLogger(__name__)


class GivesBackLeases(Protocol):
    def give_back(self, job_id: str) -> None:
        """The running attempt of `job_id` ends with no outcome (service/worker/middleware/lease.py)."""


#: Never retried, whatever the actor says: another attempt cannot change the outcome.
NOT_RETRYABLE = (InvalidPayload, JobCancelled, PermanentError)


def describe(exception: BaseException) -> str:
    """One line for a job's failedReason or lastError, redacted as log lines are: it is stored and shown too."""
    text = str(exception).strip()
    return logs.shorten(f"{type(exception).__name__}: {text}" if text else type(exception).__name__)


def stored_traceback(exception: BaseException, limit: int = 8000) -> str:
    """An exception's traceback as stored with its job: redacted, its last `limit` characters (where the error is)."""
    return logs.shorten_tail("".join(traceback.format_exception(exception, limit=30)), limit)


def backoff_ms(retry: int, *, delays: list[int], policy: str, max_backoff_ms: int, jitter: float = 0.1) -> int:
    """Delay before retry number `retry` (1-based).

    "fixed" walks the schedule and repeats its last step; "exponential" doubles the first step each time.
    """
    base = delays[0] * 2 ** (retry - 1) if policy == "exponential" else delays[min(retry, len(delays)) - 1]
    base = min(base, max_backoff_ms)
    return max(0, int(base * random.uniform(1 - jitter, 1 + jitter)))


class Retries(Middleware):
    """Replaces Dramatiq's Retries: same option names, plus `retry_delays` and `retry_backoff`."""

    def __init__(
        self,
        *,
        max_retries: int,
        delays: list[int],
        max_backoff_ms: int = 86_400_000,
        leases: GivesBackLeases | None = None,
    ) -> None:
        self.leases = leases
        self.max_retries = max_retries
        self.delays = delays
        self.max_backoff_ms = max_backoff_ms

    @property
    def actor_options(self) -> set[str]:
        return {"max_retries", "retry_delays", "retry_backoff", "max_backoff", "throws", "retry_when"}

    def option(self, broker: dramatiq.Broker, message: Any, name: str, default: Any) -> Any:
        actor = broker.get_actor(message.actor_name)
        return message.options.get(name, actor.options.get(name, default))

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if exception is None or isinstance(exception, LeaseLost):
            return  # a lost lease is not the job's failure: the lease middleware sends the message back as it is
        # Every broker.enqueue below raises when the successor cannot be published (after Dramatiq's own attempts):
        # the exception leaves this hook on purpose, so the original is not acknowledged and goes back to RabbitMQ.
        if isinstance(exception, Shutdown):
            # The worker stopped mid-job: not the job's fault. It runs again at once, elsewhere. The retry count
            # moves on (so its record can leave `active`) and so does its budget, which stays as it was.
            message.options["retries"] = message.options.get("retries", 0) + 1
            message.options["max_retries"] = self.option(broker, message, "max_retries", self.max_retries) + 1
            message.options["last_error"] = describe(exception)
            logger.info("requeueing %s: its worker stopped before it finished", message.message_id)
            self._publish(broker, message, None)
            return
        throws = self.option(broker, message, "throws", ()) or ()
        if isinstance(exception, NOT_RETRYABLE) or (throws and isinstance(exception, throws)):
            message.fail()
            return

        retries = message.options.get("retries", 0)
        max_retries = self.option(broker, message, "max_retries", self.max_retries)
        retry_when = self.option(broker, message, "retry_when", None)
        exhausted = not retry_when(retries, exception) if retry_when else retries >= max_retries
        if exhausted:
            logger.warning("retries exhausted for %s after %d retries", message.message_id, retries)
            message.fail()
            return

        if isinstance(exception, dramatiq.Retry) and exception.delay is not None:
            delay = int(exception.delay)
        else:
            delay = backoff_ms(
                retries + 1,
                delays=self.option(broker, message, "retry_delays", self.delays),
                policy=self.option(broker, message, "retry_backoff", "fixed"),
                max_backoff_ms=self.option(broker, message, "max_backoff", self.max_backoff_ms),
            )
        message.options["retries"] = retries + 1
        message.options["last_error"] = describe(exception)[:2000]
        message.options["traceback"] = stored_traceback(exception)
        logger.info("retrying %s in %d ms", message.message_id, delay)
        self._publish(broker, message, delay)

    def _publish(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        """Publish the successor, confirmed by RabbitMQ, or raise: the original is then not acknowledged (it goes
        back to RabbitMQ and runs again), and nothing records a retry that does not exist."""
        try:
            broker.enqueue(message, delay=delay)
        except Exception:
            logger.warning("%s: its retry could not be published; its message goes back", message.message_id)
            if self.leases is not None:
                self.leases.give_back(message.message_id)
            raise
