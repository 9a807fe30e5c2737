"""Interruptions reach a worker thread only while its actor runs, never in a hook: a finished attempt stays finished.

A time limit, a cancellation, a graceful stop's deadline or a lost lease raises an exception in the job's thread
(CPython's async exceptions, as Dramatiq's TimeLimit does). Raised while the thread is in a middleware hook instead
(a slow `completed` write during a Redis outage), it would turn an attempt that finished into a failure, or break
the hook half-way. So every interrupter goes through RunningActors, which marks a thread from the moment its actor's
function starts to the moment it returns, and cancels an exception still pending when it returns.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.common import q_name
from dramatiq.middleware import CurrentMessage, Middleware
from dramatiq.middleware.threading import raise_thread_exception
from dramatiq.middleware.time_limit import TimeLimitExceeded

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """One actor call in progress."""

    job_id: str
    started: float  #: time.monotonic() when the actor's function started
    queue: str = ""  #: the job's queue, without a delay queue's suffix (worker metrics count busy threads by it)
    interrupted: bool = False
    depth: int = 1  #: an actor that calls another actor's function directly is still one run


def _cancel_pending_interrupt(thread_id: int) -> None:
    # PyThreadState_SetAsyncExc with NULL clears an exception set for the thread and not raised yet.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


class RunningActors(Middleware):
    """Which worker threads run an actor now, and since when; the one way to interrupt one."""

    def __init__(self) -> None:
        self._runs: dict[int, Run] = {}  # worker thread id -> its actor call
        self._lock = threading.Lock()

    def after_declare_actor(self, broker: dramatiq.Broker, actor: Any) -> None:
        actor.fn = self._wrap(actor.fn)

    def interrupt(self, thread_id: int, job_id: str, exception: type[BaseException]) -> bool:
        """Raise `exception` in the thread if it runs the actor of `job_id` and was not interrupted yet. Returns
        whether it was raised (False: not running yet, finished, or already interrupted: ask again later or not)."""
        with self._lock:
            run = self._runs.get(thread_id)
            if run is None or run.job_id not in ("", job_id) or run.interrupted:
                return False
            run.interrupted = True
            raise_thread_exception(thread_id, exception)  # type: ignore[no-untyped-call]
            return True

    def runs(self) -> dict[int, Run]:
        with self._lock:
            return dict(self._runs)

    def _enter(self, thread_id: int) -> None:
        message = CurrentMessage.get_current_message()
        job_id = message.message_id if message is not None else ""
        queue = q_name(message.queue_name) if message is not None else ""
        with self._lock:
            run = self._runs.get(thread_id)
            if run is not None:
                run.depth += 1
            else:
                self._runs[thread_id] = Run(job_id, time.monotonic(), queue=queue)

    def _leave(self, thread_id: int) -> None:
        with self._lock:
            run = self._runs.get(thread_id)
            if run is None:
                return
            run.depth -= 1
            if run.depth > 0:
                return
            del self._runs[thread_id]
            if run.interrupted:
                _cancel_pending_interrupt(thread_id)

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            thread_id = threading.get_ident()
            self._enter(thread_id)
            returned = False
            try:
                result = fn(*args, **kwargs)
                returned = True
                self._leave(thread_id)
                return result
            except BaseException:
                if not returned:
                    self._leave(thread_id)
                    raise
                # An interruption that arrived after the function had returned: the attempt finished; drop it.
                self._leave(thread_id)
                return result

        return run


class JobTimeLimit(Middleware):
    """Dramatiq's TimeLimit, counted from the actor's start and raised only while the actor runs (RunningActors).

    Same option (`time_limit`, ms) and same exception (TimeLimitExceeded), so retries and records read as before.
    """

    def __init__(self, running: RunningActors, *, time_limit: int, interval_s: float = 1.0) -> None:
        self.running = running
        self.time_limit = time_limit
        self.interval_s = interval_s
        self._limits: dict[int, tuple[str, float]] = {}  # worker thread id -> (job id, limit in ms)
        self._lock = threading.Lock()

    @property
    def actor_options(self) -> set[str]:
        return {"time_limit"}

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        threading.Thread(target=self._watch, name="time-limits", daemon=True).start()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        actor = broker.get_actor(message.actor_name)
        limit = message.options.get("time_limit") or actor.options.get("time_limit", self.time_limit)
        with self._lock:
            self._limits[threading.get_ident()] = (message.message_id, float(limit))

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        with self._lock:
            self._limits.pop(threading.get_ident(), None)

    after_skip_message = after_process_message

    def check(self) -> None:
        now = time.monotonic()
        with self._lock:
            limits = dict(self._limits)
        for thread_id, run in self.running.runs().items():
            job_id, limit_ms = limits.get(thread_id, ("", float("inf")))
            late = job_id and run.job_id in ("", job_id) and (now - run.started) * 1000 >= limit_ms
            if late and self.running.interrupt(thread_id, job_id, TimeLimitExceeded):
                logger.warning("job %s exceeded its time limit of %d ms: interrupting it", job_id, limit_ms)

    def _watch(self) -> None:
        while True:
            time.sleep(self.interval_s)
            try:
                self.check()
            except Exception:  # a bug here must not end the watch for every later job
                logger.exception("time limit check failed")
