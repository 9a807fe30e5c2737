"""Runs the lifecycle-event relay (service.events) in every worker process, from boot to after the last job."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from service.events import EventRelay


class EventRelaying(Middleware):
    def __init__(self, relay: EventRelay) -> None:
        self.relay = relay

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.relay.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        # After the jobs in hand finished: their completed events go out before the process ends.
        self.relay.stop()
