"""The jobs a worker process has in hand: one entry per worker thread, written when a message's processing starts
and removed when it ends, read by every feature that needs to know what runs where.

Graceful stop, the cancel watcher, lease renewal and fencing, the time limit, the heartbeat and the busy-thread
metrics all read this one registry; each hangs what it needs on the thread's entry (the lease, when "active" was
recorded) instead of keeping a dict and a lock of its own. Per message that is one dict insert, one dict removal
and one lock (the end of the actor call, below). Only a message's own thread writes its key, and readers copy the
dict in one C-level step under the GIL, as service/worker/sample.py does with Dramatiq's own dicts.

Interruptions (a time limit, a cancellation, a graceful stop's deadline, a lost lease) raise an exception in the
job's thread (CPython's async exceptions, as Dramatiq's TimeLimit does). Raised while the thread is in a middleware
hook instead (a slow `completed` write during a Redis outage), it would turn an attempt that finished into a
failure, or break the hook half-way. So every interrupter goes through `interrupt`, which raises only while the
entry's actor function runs, and an exception still pending when it returns is cancelled.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.common import q_name
from dramatiq.middleware import CurrentMessage, Middleware
from dramatiq.middleware.threading import raise_thread_exception

if TYPE_CHECKING:
    from service.worker.middleware.lease import Held

logger = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class InHand:
    """One worker thread's message, from the start of its "before" hooks to the end of its "after" hooks."""

    job_id: str
    actor: str
    queue: str  #: without a delay queue's suffix (worker metrics count busy threads by it)
    thread_id: int
    thread: int  #: the thread's number in this process, from 1, in the order threads took their first job
    message: Any = field(repr=False, default=None)
    #: time.time() when the status middleware recorded the job `active` (None: not started, or skipped)
    active_at: float | None = None
    #: the lease that "active" took, with its fencing token (service/worker/middleware/lease.py); None once released
    lease: Held | None = None
    #: the actor's function runs now (interruptible); how many nested actor calls, and since when
    running: bool = False
    depth: int = 0
    run_started: float = 0.0  #: time.monotonic() when the actor's function started
    interrupted: bool = False  #: an interruption was raised in this run
    temporary: bool = False  #: an actor called outside a worker's message (no hooks ran): removed when it returns


def _cancel_pending_interrupt(thread_id: int) -> None:
    # PyThreadState_SetAsyncExc with NULL clears an exception set for the thread and not raised yet.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


class JobsInHand(Middleware):
    """First in the broker's list, so an entry exists for every other hook: its "before" hook runs first and its
    "after" (or "skip") hook last. Also wraps each actor's function to mark the run, and is the one way to interrupt
    a worker thread."""

    def __init__(self) -> None:
        self._entries: dict[int, InHand] = {}  # worker thread id -> its message in hand
        self._numbers: dict[int, int] = {}  # worker thread id -> its number in this process, from 1
        #: Guards the run marks against interruptions (an exception must never be raised after the run ended).
        self._lock = threading.Lock()
        #: Set when a job becomes active or ends: the heartbeat writes the busy view at once.
        self.changed = threading.Event()

    # -- written once at the start, once at the end ---------------------------------------------------------

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.start(message)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self.end()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.end()

    def start(self, message: Any) -> InHand:
        ident = threading.get_ident()
        number = self._numbers.get(ident) or self._number(ident)
        entry = InHand(message.message_id, message.actor_name, q_name(message.queue_name), ident, number, message)
        self._entries[ident] = entry
        return entry

    def end(self) -> None:
        entry = self._entries.pop(threading.get_ident(), None)
        if entry is not None and entry.active_at is not None:
            self._signal()

    def _number(self, ident: int) -> int:
        with self._lock:  # once per thread: two threads taking their first job at once get distinct numbers
            return self._numbers.setdefault(ident, len(self._numbers) + 1)

    def _signal(self) -> None:
        if not self.changed.is_set():  # a busy worker finds it set already: no lock, no wake-up
            self.changed.set()

    # -- what the features write on their entry -------------------------------------------------------------

    def activate(self) -> None:
        """This thread's job is recorded `active` now: it counts as running for the heartbeat from here."""
        entry = self._entries.get(threading.get_ident())
        if entry is not None:
            entry.active_at = time.time()
            self._signal()

    # -- read -----------------------------------------------------------------------------------------------

    def mine(self) -> InHand | None:
        """This thread's entry, if it has a message in hand."""
        return self._entries.get(threading.get_ident())

    def entries(self) -> list[InHand]:
        """A copy, taken at once: entries may come and go meanwhile."""
        return list(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def runs(self) -> dict[int, InHand]:
        """Worker thread id -> its entry, for the threads whose actor's function runs now."""
        return {entry.thread_id: entry for entry in self.entries() if entry.running}

    # -- the actor's run, and interruptions -----------------------------------------------------------------

    def after_declare_actor(self, broker: dramatiq.Broker, actor: Any) -> None:
        actor.fn = self._wrap(actor.fn)

    def interrupt(self, thread_id: int, job_id: str, exception: type[BaseException]) -> bool:
        """Raise `exception` in the thread if it runs the actor of `job_id` and was not interrupted yet. Returns
        whether it was raised (False: not running yet, finished, or already interrupted: ask again later or not)."""
        with self._lock:
            entry = self._entries.get(thread_id)
            if entry is None or not entry.running or entry.job_id not in ("", job_id) or entry.interrupted:
                return False
            entry.interrupted = True
            raise_thread_exception(thread_id, exception)  # type: ignore[no-untyped-call]
            return True

    def _enter(self, thread_id: int) -> None:
        entry = self._entries.get(thread_id)
        if entry is None:  # called outside a worker's message: tracked for this call only
            message = CurrentMessage.get_current_message()
            entry = InHand(
                message.message_id if message is not None else "",
                message.actor_name if message is not None else "",
                q_name(message.queue_name) if message is not None else "",
                thread_id,
                0,
                message,
                temporary=True,
            )
            self._entries[thread_id] = entry
        entry.depth += 1
        if entry.depth == 1:
            entry.run_started = time.monotonic()
            # No lock: an interrupter that reads `running` before this line finds nothing to interrupt, and one
            # after it raises inside the wrapper's `try`, which ends the run as below.
            entry.running = True

    def _leave(self, thread_id: int) -> None:
        entry = self._entries.get(thread_id)
        if entry is None:
            return
        entry.depth -= 1
        if entry.depth > 0:
            return
        with self._lock:
            entry.running = False
            if entry.interrupted:
                _cancel_pending_interrupt(thread_id)
        if entry.temporary:
            self._entries.pop(thread_id, None)

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            thread_id = threading.get_ident()
            returned = False
            try:
                self._enter(thread_id)
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
