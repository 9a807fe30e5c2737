"""Each worker process checks at start that Redis keeps what it writes (service.store.redis_config)."""

from __future__ import annotations

from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware

from service.store.redis_config import warn_if_unsafe


class RedisConfigCheck(Middleware):
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        warn_if_unsafe(self.client, "worker")
