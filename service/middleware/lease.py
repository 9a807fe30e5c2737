"""A lease per running job, renewed by its worker: when it lapses, no live worker is running that job.

Costs nothing per job: a thread renews the leases of every job in hand in one pipeline every third of `lease_ms`.
So a job running for longer than a third of `lease_ms` always has a lease while its worker lives, and cleanup only
considers `active` jobs that have not changed for a whole `lease_ms` (service/maintenance.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware

from service import keys

logger = logging.getLogger(__name__)


class JobLease(Middleware):
    """Keeps `jobs:lease:<job id>` alive for each job this process is running."""

    def __init__(self, client: redis.Redis, *, lease_ms: int = 30_000) -> None:
        self.client = client
        self.lease_ms = lease_ms
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self._held: dict[int, str] = {}  # worker thread id -> job id
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.holder = f"{socket.gethostname()}:{os.getpid()}"  # the forked process's own pid
        self._stop.clear()
        threading.Thread(target=self._renew_forever, name="job-leases", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._lock:
            self._held[threading.get_ident()] = message.message_id

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self._release()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._release()

    def _release(self) -> None:
        # The key itself is left to lapse: deleting it would cost a round trip per job, and a lease on a
        # finished job means nothing (cleanup only looks at active ones).
        with self._lock:
            self._held.pop(threading.get_ident(), None)

    def renew(self) -> None:
        with self._lock:
            held = list(self._held.values())
        if not held:
            return
        pipe = self.client.pipeline(transaction=False)
        for job_id in held:
            pipe.set(keys.lease(job_id), self.holder, px=self.lease_ms)
        pipe.execute()

    def _renew_forever(self) -> None:
        while not self._stop.wait(self.lease_ms / 3000):
            try:
                self.renew()
            except redis.RedisError:
                logger.warning("job leases not renewed: job store unreachable")
