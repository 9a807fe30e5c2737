"""Each worker process writes a heartbeat with a time-to-live: the workers alive, and what each thread runs now."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from typing import Any

import dramatiq
import redis
from dramatiq.common import q_name
from dramatiq.middleware import Middleware

from service.clock import now_iso
from service.store import JobStore

logger = logging.getLogger(__name__)


class Heartbeat(Middleware):
    """Beats every `interval_s`; a process that dies stops beating and drops out after `ttl_s`."""

    def __init__(
        self, store: JobStore, *, interval_s: float = 3.0, ttl_s: float = 10.0, min_gap_s: float = 0.25
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        #: A job starting or ending beats at once (for the busy view), but no more often than this.
        self.min_gap_s = min_gap_s
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        #: message id -> what a thread runs (job, actor, queue, thread number, start), for the busy view
        self._running: dict[str, dict[str, Any]] = {}
        self._threads: dict[int, int] = {}  # thread ident -> its number in this process, from 1
        self._changed = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._info: dict[str, Any] = {}

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        # Forked worker processes share the parent's pid at construction time; take the real one now.
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        queues = worker.consumer_whitelist or broker.get_declared_queues()
        self._info = {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "threads": int(worker.worker_threads),
            "queues": sorted({q_name(q) for q in queues}),
            "startedAt": now_iso(),
        }
        self._stop.clear()
        threading.Thread(target=self._beat_forever, name="heartbeat", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()
        self._changed.set()
        with contextlib.suppress(redis.RedisError):  # if not removed now, the key expires on its own
            self.store.forget_worker(self.worker_id)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        ident = threading.get_ident()
        with self._lock:
            thread = self._threads.setdefault(ident, len(self._threads) + 1)
            self._running[message.message_id] = {
                "jobId": message.message_id,
                "actor": message.actor_name,
                "queue": q_name(message.queue_name),
                "thread": thread,
                "startedAt": now_iso(),
            }
        self._changed.set()  # the beat is written by the heartbeat thread, never by the job's

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self._forget(message.message_id)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._forget(message.message_id)

    def _forget(self, message_id: str) -> None:
        with self._lock:
            gone = self._running.pop(message_id, None)
        if gone is not None:
            self._changed.set()

    def beat(self) -> None:
        with self._lock:
            running = sorted(self._running.values(), key=lambda r: int(r["thread"]))
        info = {**self._info, "busy": len(running), "running": running, "beatAt": now_iso()}
        self.store.beat(self.worker_id, info, self.ttl_s)

    def _beat_forever(self) -> None:
        while not self._stop.is_set():
            self._changed.clear()
            try:
                self.beat()
            except redis.RedisError:
                logger.warning("heartbeat not written: job store unreachable")
            if self._stop.wait(self.min_gap_s):
                return
            self._changed.wait(max(self.interval_s - self.min_gap_s, 0))
