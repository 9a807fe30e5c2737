"""RabbitMQ for the service: the broker whose queue declarations explain a mismatch, and the one link every other call
goes through (API, CLI, dashboard, the dead-letter requeue, the event export): one connect attempt, a hard deadline
on every call, and one error for all that can go wrong on the way (BrokerUnreachable)."""

from __future__ import annotations

import contextlib
import copy
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import cache
from typing import Any, Literal, TypeVar

import dramatiq.errors
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import dq_name, xq_name
from pika.adapters.blocking_connection import BlockingChannel
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from service.rabbit.acks import BatchingConsumer

T = TypeVar("T")
ChannelKind = Literal["confirm", "tx", "plain"]

#: Errors after which this thread's connection is thrown away and the call tried once more on a fresh one.
LINK_ERRORS: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPError,
    AMQPConnectorException,  # a handshake that timed out surfaces as this, outside pika's AMQPError tree
    ConnectionError,
    OSError,
)


class BrokerUnreachable(ConnectionError):
    """RabbitMQ did not answer within the deadline, or the connection or channel failed on the way."""


@contextlib.contextmanager
def mapped() -> Iterator[None]:
    """Inside, whatever the way to RabbitMQ raises comes out as BrokerUnreachable."""
    try:
        yield
    except LINK_ERRORS as error:
        if isinstance(error, BrokerUnreachable):
            raise
        raise BrokerUnreachable(f"{type(error).__name__}: {error}") from error


def answer(future: Future[T], deadline_s: float) -> T:
    """The result of a call running on a link thread, waited for at most `deadline_s`."""
    with mapped():
        try:
            return future.result(timeout=deadline_s)
        except FutureTimeout:
            # The thread may still be stuck on a silent broker; it drops its connection when it comes back.
            raise BrokerUnreachable(f"no answer within {deadline_s:g}s") from None


class QueueMismatch(dramatiq.errors.ConnectionError):  # type: ignore[misc]
    """A queue exists with other arguments than the service declares it with. A Dramatiq consumer logs this error's
    one line (and tries again every few seconds, so the worker recovers once the queue is fixed)."""


#: RabbitMQ's reply: "... inequivalent arg 'x-max-priority' for queue 'q' in vhost '/': received the value '10' of
#: type 'signedint' but current is none" (or "but current is the value '5' of type ...").
_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)'.*but current is (?:the value '(?P<current>[^']*)'|(?P<none>none))"
)
PRECONDITION_FAILED = 406
NOT_FOUND = 404


def if_missing(default: T, call: Callable[[], T]) -> T:
    """`call()`, or `default` when RabbitMQ answered NOT_FOUND (the queue was never declared). RabbitMQ closed the
    channel then; the next call on it opens another (RabbitLink.channel, LinkSession)."""
    try:
        return call()
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code != NOT_FOUND:
            raise
        return default


def explain_mismatch(queue: str, wanted: dict[str, Any], reply_text: str, vhost: str) -> str:
    """One line: the queue, the argument that differs, and what to do about it."""
    match = _INEQUIVALENT.search(reply_text)
    if match is None:
        return f"queue {queue!r} exists with other arguments than this service declares ({reply_text})"
    arg = match["arg"]
    current = match["current"] if match["current"] is not None else "none"
    want = {**wanted, "durable": True}.get(arg, "none")
    how = f"RabbitmqBroker(..., max_priority={want})" if arg == "x-max-priority" else "the same arguments"
    in_vhost = f"-p {vhost} " if vhost != "/" else ""
    return (
        f"queue {queue!r} exists with {arg}={current} but this service declares it with {arg}={want}: "
        f"declare it with {how}, or delete it once it holds nothing you need "
        f"(rabbitmqctl delete_queue {in_vhost}{queue}) and the worker declares it again"
    )


class ServiceBroker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker, whose queue declarations name the fix when a queue exists with other arguments
    (another client declared it first with other options): RabbitMQ only closes the channel with PRECONDITION_FAILED,
    and Dramatiq's consumer would retry that for ever without saying what is wrong."""

    @property
    def consumer_class(self) -> type[BatchingConsumer]:
        return BatchingConsumer  # acknowledgements in batches (service/rabbit/acks.py)

    def _declare_queue(self, queue_name: str) -> Any:
        wanted = self._build_queue_arguments(queue_name)  # type: ignore[no-untyped-call]
        declare = super()._declare_queue
        return self._explained(queue_name, wanted, lambda: declare(queue_name))  # type: ignore[no-untyped-call]

    def _declare_dq_queue(self, queue_name: str) -> Any:
        wanted = self._build_queue_arguments(queue_name)  # type: ignore[no-untyped-call]
        declare = super()._declare_dq_queue
        return self._explained(dq_name(queue_name), wanted, lambda: declare(queue_name))  # type: ignore[no-untyped-call]

    def _declare_xq_queue(self, queue_name: str) -> Any:
        declare = super()._declare_xq_queue
        dead: dict[str, Any] = {"x-message-ttl": DEAD_MESSAGE_TTL}
        return self._explained(xq_name(queue_name), dead, lambda: declare(queue_name))  # type: ignore[no-untyped-call]

    def _explained(self, queue: str, wanted: dict[str, Any], declare: Callable[[], T]) -> T:
        try:
            return declare()
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code != PRECONDITION_FAILED:
                raise
            del self.connection  # its channel is closed: the next declaration opens new ones
            vhost = _as_list(self.parameters)[0].virtual_host
            raise QueueMismatch(explain_mismatch(queue, wanted, error.reply_text, vhost)) from None


class RabbitLink:
    """Calls run on a small pool of threads, each with its own connection (pika connections are not thread-safe),
    and the caller waits at most `deadline_s`. Dramatiq's own enqueue retries for tens of seconds when the broker
    is away; a person waiting on an HTTP answer should get a 503 within seconds instead.

    Three ways in, one set of connection parameters, deadline and error: `run` for a call that needs no state of its
    own (publish, queue figures, purge), `session` for a sequence that must keep one channel (reading dead letters
    and acknowledging some), `connect` for a connection kept by one thread (the event export's batch channel)."""

    def __init__(self, broker: RabbitmqBroker, *, deadline_s: float = 4.0, threads: int = 16) -> None:
        self.broker = broker
        self.deadline_s = deadline_s
        self.parameters = [self._fail_fast(p, deadline_s) for p in _as_list(broker.parameters)]
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rabbit-link")
        self._ensured: set[str] = set()

    @staticmethod
    def _fail_fast(parameters: pika.ConnectionParameters, deadline_s: float) -> pika.ConnectionParameters:
        fast = copy.deepcopy(parameters)
        fast.connection_attempts = 1
        fast.retry_delay = 0
        fast.socket_timeout = deadline_s / 2
        fast.stack_timeout = deadline_s / 2
        fast.blocked_connection_timeout = deadline_s
        return fast

    def run(self, call: Callable[[RabbitLink], T]) -> T:
        """Run `call(self)` on a link thread; a dropped connection is reopened once. Raises BrokerUnreachable."""
        return answer(self._pool.submit(self._with_retry, call), self.deadline_s)

    @contextlib.contextmanager
    def session(self) -> Iterator[LinkSession]:
        """A connection and channel of its own for a sequence of calls that must share them (messages received and
        not acknowledged belong to their channel), each call under the deadline. Closed on the way out, so what it
        left unacknowledged is back in its queue, in place, when this returns."""
        session = LinkSession(self.parameters, self.deadline_s)
        try:
            yield session
        finally:
            session.close()

    def connect(self) -> pika.BlockingConnection:
        """A connection for the caller's own thread, to keep (the event export's): the link's parameters, so opening
        it takes one attempt within the deadline. Raises BrokerUnreachable."""
        with mapped():
            return pika.BlockingConnection(self.parameters)

    def _with_retry(self, call: Callable[[RabbitLink], T]) -> T:
        try:
            return call(self)
        except LINK_ERRORS:
            self.drop()  # a connection closed while idle: try once on a fresh one
            try:
                return call(self)
            except BaseException:
                self.drop()
                raise

    # -- used inside calls (on a link thread) ----------------------------------------------------------------

    def channel(self, kind: ChannelKind = "plain") -> BlockingChannel:
        channels: dict[str, BlockingChannel] = self._local.__dict__.setdefault("channels", {})
        channel = channels.get(kind)
        if channel is None or not channel.is_open:
            channel = self._connection().channel()
            if kind == "confirm":
                channel.confirm_delivery()
            elif kind == "tx":
                channel.tx_select()
            channels[kind] = channel
        return channel

    def ensure_queue(self, name: str) -> None:
        """Declare the queue, its delay queue and its dead-letter queue exactly as Dramatiq does (RabbitMQ refuses a
        declaration whose arguments differ), once per process."""
        if name in self._ensured:
            return
        self.broker.declare_queue(name)  # lets Dramatiq's own bookkeeping know the queue; no I/O
        channel = self.channel()
        arguments: dict[str, Any] = self.broker._build_queue_arguments(name)  # type: ignore[no-untyped-call]
        channel.queue_declare(queue=name, durable=True, arguments=arguments)
        channel.queue_declare(queue=dq_name(name), durable=True, arguments=arguments)
        channel.queue_declare(queue=xq_name(name), durable=True, arguments={"x-message-ttl": DEAD_MESSAGE_TTL})
        self._ensured.add(name)

    def message_count(self, name: str) -> int:
        """Ready messages in a queue (not those a worker holds unacked); 0 when the queue does not exist."""
        return if_missing(0, lambda: int(self.channel().queue_declare(queue=name, passive=True).method.message_count))

    def purge_queue(self, name: str) -> int:
        """Removes a queue's ready messages (not those a reader holds) and returns how many; 0 if it does not exist."""
        return if_missing(0, lambda: int(self.channel().queue_purge(name).method.message_count))

    def drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.__dict__.pop("channels", None)
        self._local.connection = None
        if connection is not None and connection.is_open:
            with contextlib.suppress(Exception):  # it is being thrown away; a failed close changes nothing
                connection.close()

    def _connection(self) -> pika.BlockingConnection:
        connection: pika.BlockingConnection | None = getattr(self._local, "connection", None)
        if connection is None or not connection.is_open:
            self._local.__dict__.pop("channels", None)
            connection = pika.BlockingConnection(self.parameters)
            self._local.connection = connection
        return connection


class LinkSession:
    """One connection on one thread of its own (pika connections are not thread-safe), opened at the first call with
    the link's parameters. Each call waits at most the deadline; after one that failed or did not answer, the session
    is spent (what its channel received is gone with it), and every later call raises BrokerUnreachable at once."""

    def __init__(self, parameters: list[pika.ConnectionParameters], deadline_s: float) -> None:
        self.parameters = parameters
        self.deadline_s = deadline_s
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rabbit-session")
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._spent: BrokerUnreachable | None = None

    def run(self, call: Callable[[BlockingChannel], T]) -> T:
        """`call(channel)` on the session's thread. Raises BrokerUnreachable."""
        if self._spent is not None:
            raise BrokerUnreachable(f"an earlier call of this session failed: {self._spent}")
        try:
            return answer(self._thread.submit(lambda: call(self._open())), self.deadline_s)
        except BrokerUnreachable as error:
            self._spent = error
            raise

    def _open(self) -> BlockingChannel:
        if self._connection is None:
            self._connection = pika.BlockingConnection(self.parameters)
        if self._channel is None or not self._channel.is_open:
            # A channel RabbitMQ closed (NOT_FOUND, handled by the call) is replaced; its connection is still good.
            self._channel = self._connection.channel()
        return self._channel

    def close(self) -> None:
        """Close the connection, and wait for that (at most the deadline) unless a call failed: then the caller has
        its error already, and a call stuck on a silent broker closes the connection once it comes back."""
        closing = self._thread.submit(self._close)
        self._thread.shutdown(wait=False)
        if self._spent is None:
            with contextlib.suppress(Exception):  # being thrown away: a failed or late close changes nothing
                closing.result(timeout=self.deadline_s)

    def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            connection.close()


def _as_list(parameters: Any) -> list[pika.ConnectionParameters]:
    return list(parameters) if isinstance(parameters, list | tuple) else [parameters]


@cache
def shared_link(broker: RabbitmqBroker) -> RabbitLink:
    """One link (and so one small pool of connections) per broker and process."""
    return RabbitLink(broker)
