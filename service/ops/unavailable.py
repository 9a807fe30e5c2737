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


#: What "unreachable" looks like from each side, for `except` clauses. Redis errors that say "reachable but refusing
#: the write" are ResponseErrors told apart by their code; store_failure() knows those too.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    BrokerConnectionError,
    pika.exceptions.AMQPError,
    ConnectionError,
    OSError,
)
STORE_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,  # also BusyLoadingError, AuthenticationError, MaxConnectionsError
    redis.TimeoutError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.NoPermissionError,
    redis.exceptions.ClusterDownError,  # also MasterDownError
    redis.exceptions.TryAgainError,
)

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


def store_failure(error: BaseException) -> Unavailable | None:
    """The Unavailable a Redis error means, or None for one that is not about Redis's state (a bug: a 500)."""
    if isinstance(error, redis.exceptions.BusyLoadingError):
        reason = Reason.BUSY
    elif isinstance(error, redis.ConnectionError | redis.TimeoutError):
        reason = Reason.UNREACHABLE
    elif isinstance(error, redis.exceptions.OutOfMemoryError):
        reason = Reason.OUT_OF_MEMORY
    elif isinstance(error, redis.exceptions.ReadOnlyError):
        reason = Reason.READ_ONLY
    elif isinstance(error, redis.exceptions.NoPermissionError):
        reason = Reason.NOT_PERMITTED
    elif isinstance(error, redis.exceptions.ClusterDownError | redis.exceptions.TryAgainError):
        reason = Reason.NO_MASTER
    elif isinstance(error, redis.ResponseError) and (coded := _CODED.get(str(error).split(" ", 1)[0])):
        reason = coded  # inside a Lua script, redis-py sees the code as text: "OOM command not allowed ... script:"
    else:
        return None
    return Unavailable(Side.REDIS, str(error) or type(error).__name__, reason)


def failure(error: BaseException) -> Unavailable | None:
    """The Unavailable any error means (Redis first: none of its errors is an OSError), or None."""
    if isinstance(error, Unavailable):
        return error
    if isinstance(error, redis.RedisError):
        return store_failure(error)
    if isinstance(error, BROKER_ERRORS):
        return Unavailable(Side.RABBITMQ, str(error) or type(error).__name__)
    return None


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
