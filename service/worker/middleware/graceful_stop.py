"""Stopping a worker cleanly: on SIGTERM, finish the jobs in hand and start none, within a timeout.

Dramatiq already lets running jobs finish and leaves unstarted prefetched messages unacknowledged, so RabbitMQ
requeues them when the worker's channels close. Two gaps remain, closed here:
- an idle worker thread can still pick up a prefetched message after the stop began; it is parked instead;
- Dramatiq waits up to --worker-shutdown-timeout (10 minutes) for running jobs. After WORKER_SHUTDOWN_TIMEOUT_S
  the jobs still running are interrupted with WorkerStopped, which the retry middleware turns into "run again
  elsewhere", so no record is left `active` by a stop.
- a stop must not wait on Redis: a write failing while the worker stops is not retried in the job's thread (its
  message stays unacknowledged, service/worker/hook_failures.py), and should anything still hold the process
  STOP_MARGIN_S after the timeout (a hook blocked on an unreachable server, a job deaf to its interruption), it
  exits at once. Every message whose outcome is not recorded is unacknowledged then, so RabbitMQ redelivers it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from service.domain.errors import WorkerStopped
from service.worker.middleware.in_hand import JobsInHand
from service.worker.middleware.parking import ParkingLot

logger = logging.getLogger(__name__)

#: How long past WORKER_SHUTDOWN_TIMEOUT_S a stopping worker process may take before it exits regardless.
STOP_MARGIN_S = 5.0


class GracefulStop(Middleware):
    """Reads the jobs in hand (service/worker/middleware/in_hand.py); its only per-message work is the parking check."""

    def __init__(self, parking: ParkingLot, in_hand: JobsInHand, *, timeout_s: float) -> None:
        self.parking = parking
        self.in_hand = in_hand  #: interrupts only while an actor runs, never in a hook
        self.timeout_s = timeout_s
        self.stopping = False
        self._worker: Any = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._worker = worker
        self.stopping = False

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.stopping = True
        logger.info(
            "stopping: finishing %d job(s) in hand (up to %gs); unstarted messages go back to RabbitMQ",
            len(self.in_hand),
            self.timeout_s,
        )
        threading.Thread(target=self._interrupt_when_late, name="graceful-stop", daemon=True).start()
        threading.Thread(target=self._exit_when_overdue, name="stop-deadline", daemon=True).start()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if self.stopping:
            self.parking.park(self._worker, message, "worker is stopping")

    def _interrupt_when_late(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if not self.in_hand.entries():
                return
            time.sleep(0.1)
        for entry in self.in_hand.entries():
            logger.warning("job %s still running after %gs: interrupting it; it will run again", entry.job_id,
                           self.timeout_s)  # fmt: skip
            self.in_hand.interrupt(entry.thread_id, entry.job_id, WorkerStopped)

    def _exit_when_overdue(self) -> None:
        time.sleep(self.timeout_s + STOP_MARGIN_S)
        logger.error(
            "stop overdue: still not stopped %gs after the shutdown timeout; exiting now. Messages whose outcome is"
            " not recorded stay unacknowledged, and RabbitMQ delivers them again",
            STOP_MARGIN_S,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(0)  # nothing is lost: what is not recorded is not acknowledged either
