"""Keys one holder owns at a time (a lock, a lease, a claim): taken with SET NX and a token, given back only by it."""

from __future__ import annotations

import os
import socket
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


def holder() -> str:
    """Who this process is, as a lease names its holder: "<host>:<pid>"."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_alive(value: str) -> bool:
    """Whether the holder a lease names ("<host>:<pid>/<token>") may still be alive: one on this machine whose process
    is gone is dead at once; another machine's is taken as alive until its lease lapses."""
    host, _, rest = value.partition(":")
    pid = rest.partition("/")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def take_over(client: redis.Redis, key: str, token: str, ttl_ms: int) -> bool:
    """Take the lease `key` for `token`: when it is free, or held by a process of this machine that is gone (deleted
    only if it still names that holder: another may have taken it meanwhile). Whether it is now held by `token`."""
    held = client.get(key)
    if isinstance(held, str) and not holder_alive(held):
        release(client, key, held)
    return bool(client.set(key, token, nx=True, px=ttl_ms))
