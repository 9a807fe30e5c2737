"""Keys one holder owns at a time (a lock, a lease, a claim): taken with SET NX and a token, given back only by it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from service.store import keys

#: Deletes KEYS[1] only while it still holds ARGV[1]: it may have lapsed and been taken by another holder since.
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def release(client: redis.Redis, key: str, token: str) -> bool:
    """Delete `key` if it still holds `token`, in one atomic step; whether it did."""
    return bool(client.register_script(_RELEASE)(keys=[key], args=[token]))


@contextmanager
def exclusive(client: redis.Redis, name: str, ttl_ms: int) -> Iterator[bool]:
    """A Redis lock: yields True for the one holder, False for anyone else meanwhile. It lapses after ttl_ms."""
    key, token = keys.lock(name), uuid.uuid4().hex
    held = bool(client.set(key, token, nx=True, px=ttl_ms))
    try:
        yield held
    finally:
        if held:
            release(client, key, token)
