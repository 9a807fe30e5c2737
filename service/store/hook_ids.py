"""Inbound hooks' webhook-ids in Redis: each id belongs to the first actor it was sent to, across all actors."""

from __future__ import annotations

import redis

from service.store import keys


class HookIds:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s

    def claim(self, webhook_id: str, actor: str) -> str:
        """The actor this id belongs to: `actor` itself when it is the first to send it (or sends it again)."""
        key = keys.hook_id(webhook_id)
        if self.client.set(key, actor, nx=True, ex=self.ttl_s):
            return actor
        owner = self.client.get(key)
        return actor if owner is None else str(owner)  # expired between the two calls: nobody holds it any more
