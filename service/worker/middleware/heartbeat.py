"""Each worker process writes a heartbeat with a time-to-live: the workers alive, and what each thread runs now."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import Any

import dramatiq
import redis
from dramatiq.common import q_name
from dramatiq.middleware import Middleware

from service.background import BackgroundLoop
from service.domain.clock import iso_from_ms, now_iso
from service.domain.context import this_process
from service.store.job_store import JobStore
from service.worker.middleware.in_hand import JobsInHand

logger = logging.getLogger(__name__)


class Heartbeat(Middleware):
    """Beats every `interval_s`; a process that dies stops beating and drops out after `ttl_s`. What each thread runs
    comes from the jobs in hand (service/worker/middleware/in_hand.py): no per-message hook here."""

    def __init__(
        self,
        store: JobStore,
        in_hand: JobsInHand,
        *,
        interval_s: float = 3.0,
        ttl_s: float = 10.0,
        min_gap_s: float = 0.25,
    ) -> None:
        self.store = store
        self.in_hand = in_hand
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        #: A job starting or ending beats at once (for the busy view), but no more often than this.
        self.min_gap_s = min_gap_s
        self.worker_id = this_process()
        #: A job starting or ending wakes it (`changed`), and so does a stop.
        self._beats = BackgroundLoop("heartbeat", self._beat_forever, wake=in_hand.changed)
        self._info: dict[str, Any] = {}

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        # Forked worker processes share the parent's pid at construction time; take the real one now.
        self.worker_id = this_process()
        queues = worker.consumer_whitelist or broker.get_declared_queues()
        self._info = {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "threads": int(worker.worker_threads),
            "queues": sorted({q_name(q) for q in queues}),
            "startedAt": now_iso(),
        }
        self._beats.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._beats.stop()
        with contextlib.suppress(redis.RedisError):  # if not removed now, the key expires on its own
            self.store.forget_worker(self.worker_id)

    def beat(self) -> None:
        # Jobs recorded `active`, each as the busy view shows it (job, actor, queue, thread number, start).
        running = [
            {
                "jobId": entry.job_id,
                "actor": entry.actor,
                "queue": entry.queue,
                "thread": entry.thread,
                "startedAt": iso_from_ms(int(entry.active_at * 1000)),
            }
            for entry in sorted(self.in_hand.entries(), key=lambda e: e.thread)
            if entry.active_at is not None
        ]
        info = {**self._info, "busy": len(running), "running": running, "beatAt": now_iso()}
        self.store.beat(self.worker_id, info, self.ttl_s)

    def _beat_forever(self) -> None:
        changed, stopping = self.in_hand.changed, self._beats.stopping
        while not stopping.is_set():
            changed.clear()
            try:
                self.beat()
            except redis.RedisError:
                logger.warning("heartbeat not written: job store unreachable")
            if stopping.wait(self.min_gap_s):
                return
            changed.wait(max(self.interval_s - self.min_gap_s, 0))
