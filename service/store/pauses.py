"""Paused queues: one flag per queue in Redis, shared by the API, the CLI, the dashboard and every worker."""

from __future__ import annotations

import redis

from service.store import keys


class PauseFlags:
    """Set and read the flags. Workers poll `paused()`; nothing here talks to RabbitMQ."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def pause(self, queue: str) -> None:
        self.client.set(keys.paused(queue), "1")

    def resume(self, queue: str) -> None:
        self.client.delete(keys.paused(queue))

    def is_paused(self, queue: str) -> bool:
        return bool(self.client.exists(keys.paused(queue)))

    def paused(self, queues: list[str]) -> set[str]:
        """Which of these queues are paused, in one round trip."""
        if not queues:
            return set()
        flags = self.client.mget([keys.paused(q) for q in queues])
        return {q for q, flag in zip(queues, flags, strict=True) if flag}
