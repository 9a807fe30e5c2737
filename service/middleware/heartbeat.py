"""Each worker process writes a heartbeat with a time-to-live, so the dashboard can count the workers alive."""

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

    def __init__(self, store: JobStore, *, interval_s: float = 3.0, ttl_s: float = 10.0) -> None:
        self.store = store
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._running: set[str] = set()  # message ids in hand, for the "busy" figure
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
        with contextlib.suppress(redis.RedisError):  # if not removed now, the key expires on its own
            self.store.forget_worker(self.worker_id)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._lock:
            self._running.add(message.message_id)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        with self._lock:
            self._running.discard(message.message_id)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._lock:
            self._running.discard(message.message_id)

    def beat(self) -> None:
        with self._lock:
            busy = len(self._running)
        self.store.beat(self.worker_id, {**self._info, "busy": busy, "beatAt": now_iso()}, self.ttl_s)

    def _beat_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except redis.RedisError:
                logger.warning("heartbeat not written: job store unreachable")
            self._stop.wait(self.interval_s)
