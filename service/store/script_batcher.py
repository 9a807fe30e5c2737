"""Runs the calls that many threads make to one Lua script as one call per Redis round trip.

A worker process runs JOB_CONCURRENCY jobs at once, and each writes two transitions. Sent one by one, each pays a
whole redis-py round trip and a whole script start, which cost more than the transition itself. Here the first
caller to arrive while none is in flight sends its own call at once (no added wait when idle); callers that arrive
meanwhile queue up, and the next of them sends the whole queue as one script call. The script takes the same KEYS
every call, and its arguments as a list of same-width groups; it returns a same-width group of results for each, in
order.

Each caller still gets only its own result, or the exception of the round trip its call went out in; the script
runs each group exactly as if it had been called alone.

Only one thread sends at a time, so the batcher keeps one connection of its own and talks on it directly: redis-py's
client path (pool, retry and instrumentation layers) cost several times the CPU of the write itself. A failed round
trip closes the connection, gives it back to the pool and raises to its callers, who decide whether to try again;
the next round trip takes one from the pool again, so an outage of any length never uses up the pool.

A call may ask to be durable (a job's final outcome, written before its message is acknowledged): a round trip with
one such call waits, after the script, until `wait_replicas` replicas have this connection's writes (Redis WAIT, at
most `wait_timeout_ms`), so a failover that promotes a replica cannot set the outcome back once RabbitMQ has
forgotten the message. Too few in time: each durable call of the round trip raises NotReplicated, a ConnectionError,
so its caller tries again as through an outage (the transition is idempotent; the WAIT comes with it) and the
message stays unacknowledged meanwhile; the other calls of the round trip get their results.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

logger = logging.getLogger(__name__)

Args = Sequence[str | int | float]
#: A short WAIT is logged at most this often.
WARN_EVERY_S = 10.0


class NotReplicated(redis.ConnectionError):
    """A durable write reached fewer replicas than asked in time: not safe yet, try again (see the module)."""


class _Call:
    __slots__ = ("args", "durable", "error", "finished", "result", "wake")

    def __init__(self, args: Args, durable: bool) -> None:
        self.args = args
        self.durable = durable
        # A lock taken now and released once to wake the caller: a third of an Event's cost, on every job's write.
        self.wake = threading.Lock()
        self.wake.acquire()
        self.finished = False
        self.result: list[Any] = []
        self.error: BaseException | None = None


class ScriptBatcher:
    def __init__(
        self,
        client: redis.Redis,
        script: Script,
        *,
        keys: Sequence[str],
        head: Args,
        result_width: int,
        max_batch: int = 64,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 0,
    ) -> None:
        self.pool = client.connection_pool
        self.script = script
        #: what every call sends after the script's sha: the number of keys, the keys, and the arguments every call
        #: shares (once, before the groups)
        self.head: list[Any] = [len(keys), *keys, *head]
        self.result_width = result_width
        self.max_batch = max_batch
        if wait_replicas and wait_timeout_ms <= 0:
            raise ValueError("waiting for replicas needs a timeout (WAIT 0 would wait for ever)")
        self.wait_replicas = wait_replicas  #: 0: durable calls do not wait (REDIS_WAIT_REPLICAS)
        self.wait_timeout_ms = wait_timeout_ms  #: REDIS_WAIT_TIMEOUT_MS
        self.short_waits = 0  #: round trips whose WAIT heard from fewer replicas than asked
        self._warn_at = 0.0
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a lock held by a thread that is gone would never open

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[_Call] = []
        self._in_flight = False  # some thread is sending, or has been chosen to send next
        self._connection: Any = None  # used only by the thread that sends

    def call(self, args: Args, *, durable: bool = False) -> list[Any]:
        """Run the script for one group of arguments; returns that group's results. `durable`: only once replicas
        have it too (see the module's docstring)."""
        call = _Call(args, durable)
        with self._lock:
            self._waiting.append(call)
            send_now = not self._in_flight
            self._in_flight = True
        if not send_now:
            call.wake.acquire()  # woken either finished or chosen to send the next batch
        if not call.finished:
            self._send_batch(call)
        if call.error is not None:
            raise call.error
        return call.result

    def _send_batch(self, sender: _Call) -> None:
        with self._lock:
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
        try:
            flat: list[Any] = list(self.head)
            for call in batch:
                flat.extend(call.args)
            results, short = self._evalsha(flat, durable=any(call.durable for call in batch))
            width = self.result_width
            for n, call in enumerate(batch):
                call.result = results[n * width : (n + 1) * width]
                if short is not None and call.durable:
                    call.error = short
        except BaseException as error:  # every caller of this round trip sees its failure, and may try again
            for call in batch:
                call.error = error
        finally:
            for call in batch:
                call.finished = True
                if call is not sender:  # the sender is awake; every other caller waits on its lock
                    call.wake.release()
            self._hand_on()

    def _evalsha(self, args: list[Any], *, durable: bool = False) -> tuple[list[Any], NotReplicated | None]:
        """The script's results, and why they are not durable yet (when a durable call asked for replicas)."""
        if self._connection is None:
            # Taken from the pool and kept while it works; get_connection gives it back itself if it cannot connect.
            self._connection = self.pool.get_connection()
        failed = True
        try:
            try:
                result = self._command(args)
            except NoScriptError:  # a restarted or flushed Redis forgets scripts
                self._connection.send_command("SCRIPT", "LOAD", self.script.script)
                self.script.sha = self._connection.read_response()
                result = self._command(args)
            short = self._wait_for_replicas() if durable and self.wait_replicas else None
            failed = False
            return result, short
        finally:
            if failed:  # back to the pool, closed (mid-reply its state is unknown): a failure never costs a slot
                connection, self._connection = self._connection, None
                connection.disconnect()
                self.pool.release(connection)

    def _command(self, args: list[Any]) -> list[Any]:
        self._connection.send_command("EVALSHA", self.script.sha, *args)
        result: list[Any] = self._connection.read_response()
        return result

    def _wait_for_replicas(self) -> NotReplicated | None:
        self._connection.send_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
        acknowledged = int(self._connection.read_response())
        if acknowledged >= self.wait_replicas:
            return None
        self.short_waits += 1
        why = (f"only {acknowledged} of {self.wait_replicas} replicas had the write after {self.wait_timeout_ms} ms"
               " (REDIS_WAIT_REPLICAS)")  # fmt: skip
        if time.monotonic() >= self._warn_at:
            self._warn_at = time.monotonic() + WARN_EVERY_S
            logger.warning("job outcomes not acknowledged yet: %s; %d such round trips so far", why, self.short_waits)
        return NotReplicated(why)

    def _hand_on(self) -> None:
        """The next waiting caller sends what has queued up meanwhile; with none waiting, the next to come will."""
        with self._lock:
            if self._waiting:
                self._waiting[0].wake.release()
            else:
                self._in_flight = False
