"""When RabbitMQ or Redis cannot serve a call (away, or there but refusing writes), in one place for every face."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum, StrEnum
from typing import TypeVar

import pika.exceptions
import redis
from dramatiq.errors import ConnectionError as BrokerConnectionError

T = TypeVar("T")


class Side(StrEnum):
    REDIS = "redis"
    RABBITMQ = "rabbitmq"


class Reason(Enum):
    """Why the server cannot serve the call; the value is how the API and the CLI say it after the server's name."""

    UNREACHABLE = "unreachable"  #: no answer, a dropped connection, a timeout, a refused login
    OUT_OF_MEMORY = "is out of memory (maxmemory reached) and refuses writes"  #: OOM command not allowed
    READ_ONLY = "is a read-only replica (a failover under way?)"  #: READONLY
    CANNOT_PERSIST = "refuses writes: it cannot save to disk (MISCONF)"  #: MISCONF, stop-writes-on-bgsave-error
    BUSY = "is busy (loading its data, or running a long script)"  #: LOADING, BUSY
    NO_MASTER = "has no master or replicas to write to"  #: MASTERDOWN, CLUSTERDOWN, TRYAGAIN, NOREPLICAS
    NOT_PERMITTED = "refuses the command (ACL permissions)"  #: NOPERM


class Unavailable(Exception):
    """RabbitMQ or Redis cannot serve this call right now: the API answers 503 and the CLI exits 4, naming it."""

    def __init__(self, side: str, detail: str, reason: Reason = Reason.UNREACHABLE) -> None:
        super().__init__(f"{side} {reason.value}: {detail}")
        self.side = Side(side)
        self.reason = reason
        self.detail = detail

    @property
    def summary(self) -> str:
        """What the API answers before "; try again shortly": "redis unreachable", "redis is out of memory (...)"."""
        return f"{self.side} {self.reason.value}"


#: What "unreachable" looks like from RabbitMQ's side, for `except` clauses.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    BrokerConnectionError,
    pika.exceptions.AMQPError,
    ConnectionError,
    OSError,
)

#: The one mapping of Redis's errors: what each class redis-py raises means, the most specific first
#: (BusyLoadingError is a ConnectionError).
_STORE_REASONS: dict[type[redis.RedisError], Reason] = {
    redis.exceptions.BusyLoadingError: Reason.BUSY,
    redis.ConnectionError: Reason.UNREACHABLE,  # also AuthenticationError, MaxConnectionsError
    redis.TimeoutError: Reason.UNREACHABLE,
    redis.exceptions.OutOfMemoryError: Reason.OUT_OF_MEMORY,
    redis.exceptions.ReadOnlyError: Reason.READ_ONLY,
    redis.exceptions.NoPermissionError: Reason.NOT_PERMITTED,
    redis.exceptions.ClusterDownError: Reason.NO_MASTER,  # also MasterDownError
    redis.exceptions.TryAgainError: Reason.NO_MASTER,
}
#: Error codes redis-py leaves in a plain ResponseError's text (it strips those it has a class for).
_CODED = {
    "MISCONF": Reason.CANNOT_PERSIST,
    "BUSY": Reason.BUSY,
    "NOREPLICAS": Reason.NO_MASTER,
    "MASTERDOWN": Reason.NO_MASTER,
    "CLUSTERDOWN": Reason.NO_MASTER,
    "TRYAGAIN": Reason.NO_MASTER,
    "OOM": Reason.OUT_OF_MEMORY,
    "READONLY": Reason.READ_ONLY,
}
#: The Redis errors that mean "Redis cannot serve this", for `except` clauses that need no reason (a health probe).
#: Those that only their code tells apart (MISCONF, BUSY...) are plain ResponseErrors: store_failure() knows them.
STORE_ERRORS: tuple[type[BaseException], ...] = tuple(_STORE_REASONS)


def _store_reason(error: redis.RedisError) -> Reason | None:
    for kind, reason in _STORE_REASONS.items():
        if isinstance(error, kind):
            return reason
    if isinstance(error, redis.ResponseError):
        # Inside a Lua script, redis-py sees the code as text: "OOM command not allowed ... script: ..."
        return _CODED.get(str(error).split(" ", 1)[0])
    return None


def store_failure(error: BaseException) -> Unavailable | None:
    """What the API, the CLI and every store call ask: the Unavailable `error` is, or means when Redis raised it;
    None for any other error (a bug: a 500). RabbitMQ's errors are mapped where the call to it is made (broker_call):
    an OSError alone does not say it came from RabbitMQ."""
    if isinstance(error, Unavailable):
        return error
    reason = _store_reason(error) if isinstance(error, redis.RedisError) else None
    if reason is None:
        return None
    return Unavailable(Side.REDIS, str(error) or type(error).__name__, reason)


def failure(error: BaseException) -> Unavailable | None:
    """The Unavailable any error of a call to either server means (Redis first: none of its errors is an OSError)."""
    found = store_failure(error)
    if found is None and isinstance(error, BROKER_ERRORS):
        return Unavailable(Side.RABBITMQ, str(error) or type(error).__name__)
    return found


@contextmanager
def mapped() -> Iterator[None]:
    """Inside, an error that means "a server cannot serve this" comes out as Unavailable; any other as it was."""
    try:
        yield
    except Exception as error:
        found = failure(error)
        if found is None or found is error:
            raise
        raise found from error


def store_call(call: Callable[[], T]) -> T:
    """`call()`, whose Redis failures come out as Unavailable (and only those: it talks to Redis alone)."""
    try:
        return call()
    except redis.RedisError as error:
        found = store_failure(error)
        if found is None:
            raise
        raise found from error


def broker_call(call: Callable[[], T]) -> T:
    """`call()`, whose failures of either server come out as Unavailable."""
    with mapped():
        return call()
