"""Paused queues, seen by every worker: no new job starts from a paused queue, and its messages stay in RabbitMQ.

A thread polls the flags (service.store.pauses) twice a second. For a paused queue it pauses Dramatiq's consumer thread,
which closes its channel at the next idle moment, so RabbitMQ holds every message as ready. Messages already
fetched are parked rather than run. On resume, parked messages still held are nacked back and the consumer
restarts.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq
import redis
from dramatiq.common import q_name
from dramatiq.middleware import Middleware

from service.store.pauses import PauseFlags
from service.worker.middleware.parking import ParkingLot

logger = logging.getLogger(__name__)


class QueuePause(Middleware):
    def __init__(self, flags: PauseFlags, parking: ParkingLot, *, poll_s: float = 0.5) -> None:
        self.flags = flags
        self.parking = parking
        self.poll_s = poll_s
        self.paused: frozenset[str] = frozenset()
        self._worker: Any = None
        self._stop = threading.Event()

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        # Dramatiq starts its consumers before "after_worker_boot": read the flags first, so a queue paused before
        # the worker started has its first deliveries parked rather than run.
        main_queues = sorted(name for name in broker.get_declared_queues() if q_name(name) == name)
        try:
            self.paused = frozenset(self.flags.paused(main_queues))
        except redis.RedisError:
            logger.warning("paused queues not read at start: Redis unreachable; read again once the worker is up")

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._worker = worker
        self._stop.clear()
        self.refresh()
        threading.Thread(target=self._poll, name="queue-pause", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if q_name(message.queue_name) in self.paused:
            self.parking.park(self._worker, message, "queue is paused")

    def refresh(self) -> None:
        """Read the flags once and bring every consumer of this process in line with them."""
        worker = self._worker
        consumers = dict(worker.consumers)  # the worker adds consumers from other threads
        main_queues = sorted(name for name in consumers if q_name(name) == name)
        try:
            flagged = self.flags.paused(main_queues)
        except redis.RedisError:
            return  # keep the last known flags through a Redis outage
        held = {n for n in main_queues if n not in flagged and consumers[n].paused and _holds_stale(worker, n)}
        # Park first, then stop fetching; on resume, stop parking before handing messages back.
        self.paused = frozenset(flagged | held)
        for name in main_queues:
            consumer = consumers[name]
            if name in flagged and not consumer.paused:
                consumer.pause()  # Dramatiq's own: stops fetching and closes the channel when idle
                logger.info("queue %s paused: no new job starts here until it is resumed", name)
            elif name not in self.paused and consumer.paused:
                self.parking.release(name)
                consumer.resume()
                logger.info("queue %s resumed", name)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception:  # a bug here must not stop the polling: pausing would silently stop working
                logger.exception("could not refresh the paused queues")


def _holds_stale(worker: Any, queue: str) -> bool:
    """Whether messages fetched on a channel that has since closed still wait in this process's work queue.

    They must be parked before the consumer reopens: acknowledged on the new channel, their delivery tags could
    name other messages. RabbitMQ has requeued them already.
    """
    consumer = worker.consumers[queue]
    channel_closed = consumer.paused_event.is_set() or (
        consumer.consumer is not None and not consumer.consumer.connection.is_open
    )
    if not channel_closed:
        return False
    with worker.work_queue.mutex:
        return any(item.message.queue_name == queue for item in worker.work_queue.queue)
