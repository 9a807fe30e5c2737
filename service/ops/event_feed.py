"""One reader of the lifecycle-event stream per web process, handing each open event stream the events of its job.

A stream per job would not do: every SSE connection reading the whole stream to pick out one job's events costs
connections x events. Here one thread waits on the stream (XREAD BLOCK) while someone listens, and calls each
listener of a job with that job's events; it stops when the last listener goes.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable

import redis

from service.ops.event_log import Event, EventLog

logger = logging.getLogger(__name__)

Listener = Callable[[Event], None]

#: How long one read waits for an event; also how soon the thread notices that nobody listens any more.
BLOCK_MS = 1000


class EventFeed:
    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def listen(self, job_id: str, listener: Listener) -> Callable[[], None]:
        """Call `listener` (from the feed's thread) with every event of `job_id` added from now on. Returns the
        function that stops it. Raises a Redis error when the stream cannot be read."""
        start: str | None = None
        with self._lock:
            self._listeners[job_id].add(listener)
            if self._thread is None:
                try:
                    start = self.log.last_id()  # before returning: nothing added after this call is missed
                except redis.RedisError:
                    self._forget(job_id, listener)
                    raise
                self._thread = threading.Thread(target=self._run, args=(start,), name="event-feed", daemon=True)
                self._thread.start()

        def stop() -> None:
            with self._lock:
                self._forget(job_id, listener)

        return stop

    def _forget(self, job_id: str, listener: Listener) -> None:
        listeners = self._listeners.get(job_id)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._listeners[job_id]

    def _run(self, last_id: str) -> None:
        while True:
            with self._lock:
                if not self._listeners:
                    self._thread = None
                    return
            try:
                events = self.log.after(last_id, block_ms=BLOCK_MS)
            except redis.RedisError as error:
                # The listeners still poll their job's record: they see its state, if not every step between.
                logger.warning("cannot read the event stream (%s); trying again", type(error).__name__)
                threading.Event().wait(1.0)
                continue
            if not events:
                continue
            last_id = events[-1].event_id
            with self._lock:
                calls = [(listener, e) for e in events for listener in self._listeners.get(e.job_id, ())]
            for listener, event in calls:
                listener(event)
