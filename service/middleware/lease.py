"""A lease per running job, renewed by its worker: when it lapses, no live worker is running that job.

It is taken before the status middleware marks the job active and given back after the final state is written
("after" hooks run in reverse order), so a record that is `active` without a lease belongs to a dead worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware

from service import keys

logger = logging.getLogger(__name__)

#: Deletes the lease only if it is still ours (a duplicate delivery may have taken it over).
_GIVE_BACK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class JobLease(Middleware):
    """Writes `jobs:lease:<job id>` for each job in hand and renews them every third of `lease_ms`."""

    def __init__(self, client: redis.Redis, *, lease_ms: int = 30_000) -> None:
        self.client = client
        self.lease_ms = lease_ms
        self._give_back = client.register_script(_GIVE_BACK)
        self._held: dict[int, tuple[str, str]] = {}  # worker thread id -> (job id, token)
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.clear()
        threading.Thread(target=self._renew_forever, name="job-leases", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        try:
            self.client.set(keys.lease(message.message_id), token, px=self.lease_ms)
        except redis.RedisError:
            # The status middleware waits out the outage; the renewer writes the lease once Redis is back.
            logger.warning("job lease not written: job store unreachable")
        with self._lock:
            self._held[threading.get_ident()] = (message.message_id, token)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self._release()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._release()

    def _release(self) -> None:
        with self._lock:
            held = self._held.pop(threading.get_ident(), None)
        if held is None:
            return
        job_id, token = held
        try:
            self._give_back(keys=[keys.lease(job_id)], args=[token])
        except redis.RedisError:
            logger.warning("job lease not removed; it lapses by itself")

    def _renew_forever(self) -> None:
        while not self._stop.wait(self.lease_ms / 3000):
            with self._lock:
                held = list(self._held.values())
            if not held:
                continue
            try:
                pipe = self.client.pipeline(transaction=False)
                for job_id, token in held:
                    pipe.set(keys.lease(job_id), token, px=self.lease_ms)
                pipe.execute()
            except redis.RedisError:
                logger.warning("job leases not renewed: job store unreachable")
