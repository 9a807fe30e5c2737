"""RabbitMQ for the service: the broker whose queue declarations explain a mismatch, and the one link every other call
goes through (API, CLI, dashboard, the dead-letter requeue, the event export): one connect attempt, a hard deadline
on every call, and one error for all that can go wrong on the way (BrokerUnreachable)."""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import cache
from typing import Any, Literal, TypeVar

import dramatiq
import dramatiq.errors
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import MAX_ENQUEUE_ATTEMPTS, RabbitmqBroker
from dramatiq.common import current_millis, dq_name, xq_name
from pika.adapters.blocking_connection import BlockingChannel
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from service.rabbit.acks import BatchingConsumer
from service.rabbit.lanes import LaneConsumer
from service.rabbit.queue_types import LANE_OPTION, QueueShape, QueueType

T = TypeVar("T")
logger = logging.getLogger(__name__)
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
#: type 'signedint' but current is none" (or "but current is the value '5' of type ...", or "but current is '5'").
_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)'.*but current is (?:(?:the value )?'(?P<current>[^']*)'|(?P<none>none))"
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


#: With quorum queues, the first pause between two attempts at an enqueue, doubling: 6 attempts span about 3 s.
ENQUEUE_BACKOFF_S = 0.1


def explain_mismatch(queue: str, wanted: dict[str, Any], reply_text: str, vhost: str) -> str:
    """One line: the queue, the argument that differs, and what to do about it."""
    match = _INEQUIVALENT.search(reply_text)
    if match is None:
        return f"queue {queue!r} exists with other arguments than this service declares ({reply_text})"
    arg = match["arg"]
    current = match["current"] if match["current"] is not None else "none"
    in_vhost = f"-p {vhost} " if vhost != "/" else ""
    delete = f"delete it once it holds nothing you need (rabbitmqctl delete_queue {in_vhost}{queue})"
    existing = _existing_type(arg, current)
    wanted_type = wanted.get("x-queue-type", QueueType.CLASSIC.value)
    if existing is not None and existing != wanted_type:
        return (
            f"queue {queue!r} is a {existing} queue but RABBITMQ_QUEUE_TYPE={wanted_type} declares it as a "
            f"{wanted_type} queue: set RABBITMQ_QUEUE_TYPE={existing} to use it as it is, or {delete} and the worker "
            f"declares it again"
        )
    want = {**wanted, "durable": True}.get(arg, "none")
    how = f"RabbitmqBroker(..., max_priority={want})" if arg == "x-max-priority" else "the same arguments"
    return (
        f"queue {queue!r} exists with {arg}={current} but this service declares it with {arg}={want}: "
        f"declare it with {how}, or {delete} and the worker declares it again"
    )


def _existing_type(arg: str, current: str) -> str | None:
    """The type of the queue that exists, when the differing argument tells (RabbitMQ names x-max-priority first when
    a classic queue has it, x-queue-type otherwise)."""
    if arg == "x-queue-type":
        return QueueType.CLASSIC.value if current == "none" else current
    if arg == "x-max-priority" and current != "none":
        return QueueType.CLASSIC.value  # a quorum queue cannot have one
    return None


class ServiceBroker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker, with queues of the type RABBITMQ_QUEUE_TYPE names (service/rabbit/queue_types.py):
    quorum queues get priority lanes, which its consumers read highest first and its enqueue publishes to.

    Its queue declarations name the fix when a queue exists with other arguments (another client declared it first
    with other options, or the queue type changed): RabbitMQ only closes the channel with PRECONDITION_FAILED, and
    Dramatiq's consumer would retry that for ever without saying what is wrong."""

    def __init__(self, *, shape: QueueShape | None = None, **kwargs: Any) -> None:
        # Without a shape: classic queues with the max_priority given, as Dramatiq's broker would declare them.
        self.shape = shape or QueueShape(QueueType.CLASSIC, kwargs.get("max_priority"))
        kwargs["max_priority"] = self.shape.max_priority if self.shape.type is QueueType.CLASSIC else None
        super().__init__(**kwargs)

    @property
    def consumer_class(self) -> type[BatchingConsumer]:
        return BatchingConsumer  # acknowledgements in batches (service/rabbit/acks.py)

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> dramatiq.Consumer:
        self.declare_queue(queue_name, ensure=True)
        tiers = self.shape.tiers(queue_name)
        if tiers == [[queue_name]]:
            consumer: BatchingConsumer = self.consumer_class(self, queue_name, prefetch, timeout)
        else:
            # A fair queue's lanes take turns, so its consumer hands out at most a prefetch of them at once.
            fair = self.shape.is_fair(queue_name)
            consumer = LaneConsumer(self, queue_name, tiers, prefetch, timeout, turns=fair)
        # Which node of RABBITMQ_URL it reached: after a node's loss, the line that says where the worker went.
        params = getattr(getattr(consumer.connection, "_impl", None), "params", None)
        node = f"{params.host}:{params.port}" if params is not None else "?"
        logger.info("consuming %s through %s", queue_name, node)
        return consumer

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        """Dramatiq's enqueue (6 attempts, each after a failure on a new connection to the first node of RABBITMQ_URL
        that answers), to the lane of the message's priority (and key lane, which a hook chose). With quorum queues
        the attempts pause in between: a queue electing a new leader after a node's loss (a second or two) refuses
        publishes meanwhile."""
        canonical = message.queue_name
        if delay is not None:
            message = message.copy(queue_name=dq_name(canonical), options={"eta": current_millis() + delay})
        attempts = 0
        while True:
            try:
                self.declare_queue(canonical, ensure=True)
                self.emit_before("enqueue", message, delay)
                self.channel.basic_publish(
                    exchange="",
                    routing_key=routing_key(self, message),  # after the hooks: one of them may set the key lane
                    body=message.encode(),
                    properties=pika.BasicProperties(delivery_mode=2, priority=message.options.get("broker_priority")),
                    mandatory=self.confirm_delivery,  # an unroutable message raises (only with confirms)
                )
                self.emit_after("enqueue", message, delay)
                return message
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
                del self.connection
                if isinstance(e, pika.exceptions.UnroutableError):
                    self.queues_pending.add(canonical)  # deleted meanwhile: declared again at the next attempt
                attempts += 1
                if attempts >= MAX_ENQUEUE_ATTEMPTS:
                    raise dramatiq.errors.ConnectionClosed(e) from None  # type: ignore[no-untyped-call]
                if self.shape.quorum:
                    time.sleep(ENQUEUE_BACKOFF_S * 2 ** (attempts - 1))

    def flush(self, queue_name: str) -> None:
        """Dramatiq's flush (the queue, its delay and dead-letter queues), and every lane of the queue."""
        super().flush(queue_name)
        for lane in self.shape.lanes(queue_name):
            if lane != queue_name:
                try:
                    self.channel.queue_purge(lane)
                except pika.exceptions.AMQPChannelError:
                    del self.channel  # a lane not declared yet: RabbitMQ closed the channel, the next one opens anew

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        return self.shape.work_arguments(queue_name)

    def _declare_queue(self, queue_name: str) -> Any:
        answer = self._declare(queue_name, self.shape.work_arguments(queue_name))
        for lane in self.shape.work_queues(queue_name)[1:]:
            self._declare(lane, self.shape.work_arguments(queue_name))
        return answer

    def _declare_dq_queue(self, queue_name: str) -> Any:
        return self._declare(dq_name(queue_name), self.shape.delay_arguments(queue_name))

    def _declare_xq_queue(self, queue_name: str) -> Any:
        return self._declare(xq_name(queue_name), self.shape.dead_arguments())

    def _declare(self, queue: str, arguments: dict[str, Any]) -> Any:
        return self._explained(
            queue, arguments, lambda: self.channel.queue_declare(queue=queue, durable=True, arguments=arguments)
        )

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
        """Declare the queue, its lanes, delay queue and dead-letter queue exactly as the workers do (RabbitMQ refuses
        a declaration whose arguments differ: QueueMismatch says which and what to do), once per process."""
        if name in self._ensured:
            return
        self.broker.declare_queue(name)  # lets Dramatiq's own bookkeeping know the queue; no I/O
        for queue, arguments in shape_of(self.broker).declarations(name):
            try:
                self.channel().queue_declare(queue=queue, durable=True, arguments=arguments)
            except pika.exceptions.ChannelClosedByBroker as error:
                if error.reply_code != PRECONDITION_FAILED:
                    raise
                self._local.__dict__.get("channels", {}).pop("plain", None)
                vhost = self.parameters[0].virtual_host
                raise QueueMismatch(explain_mismatch(queue, arguments, error.reply_text, vhost)) from None
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


def shape_of(broker: RabbitmqBroker) -> QueueShape:
    """The queue shape of the service's broker; plain Dramatiq's classic queues for any other."""
    if isinstance(broker, ServiceBroker):
        return broker.shape
    return QueueShape(QueueType.CLASSIC, broker.max_priority)


def lanes_of(broker: RabbitmqBroker, queue: str) -> list[str]:
    """The queues that hold `queue`'s waiting messages (its priority lanes with quorum queues, its key lanes when it
    is fair)."""
    return shape_of(broker).lanes(queue)


def routing_key(broker: RabbitmqBroker, message: dramatiq.Message[Any]) -> str:
    """The queue a message is published to: its own, its delay queue, or the lane of its priority and key."""
    options = message.options
    return shape_of(broker).lane_for(message.queue_name, options.get("broker_priority"), options.get(LANE_OPTION))


def _as_list(parameters: Any) -> list[pika.ConnectionParameters]:
    return list(parameters) if isinstance(parameters, list | tuple) else [parameters]


@cache
def shared_link(broker: RabbitmqBroker) -> RabbitLink:
    """One link (and so one small pool of connections) per broker and process."""
    return RabbitLink(broker)
