"""Concurrency limits shared by every worker through Redis: at most N jobs of a kind (say, per host) at once.

A slot is a lease in a sorted set scored by its expiry, so a worker killed while holding one frees it when the
lease lapses, not never. A message that finds no free slot goes back to the queue with a short delay: it is not
run, not failed and not counted as an attempt, and its thread is free for other work meanwhile.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware, SkipMessage

from service.store import keys

logger = logging.getLogger(__name__)

#: Drops lapsed leases, then takes a slot if one is free. KEYS: the set. ARGV: limit, lease ms, token.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 1
"""

#: Margin past an actor's time limit before a holder's slot is taken back from it.
LEASE_MARGIN_MS = 30_000
#: A waiting message comes back after this long at first, doubling per wait up to the maximum.
FIRST_WAIT_MS = 250
MAX_WAIT_MS = 5_000


class ConcurrencyLimit(Middleware):
    """Actor options `concurrency_limit=N` and `concurrency_key=fn(message) -> str` (one limit per key)."""

    def __init__(self, client: redis.Redis, *, default_time_limit_ms: int) -> None:
        self.client = client
        #: JOB_TIME_LIMIT_MS, for an actor that sets no time limit of its own: a slot outlives the job's own limit
        self.default_time_limit_ms = default_time_limit_ms
        self._acquire = client.register_script(_ACQUIRE)
        self._held = threading.local()

    @property
    def actor_options(self) -> set[str]:
        return {"concurrency_limit", "concurrency_key"}

    def after_declare_actor(self, broker: dramatiq.Broker, actor: dramatiq.Actor[Any, Any]) -> None:
        limit = actor.options.get("concurrency_limit")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"{actor.actor_name}: concurrency_limit must be a positive integer, not {limit!r}")

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._held.slot = None
        actor = broker.get_actor(message.actor_name)
        limit: int | None = actor.options.get("concurrency_limit")
        if not limit:
            return
        key_fn: Callable[[Any], str] | None = actor.options.get("concurrency_key")
        name = message.actor_name + (f":{key_fn(message)}" if key_fn else "")
        key = keys.semaphore(name)
        token = f"{message.message_id}:{uuid.uuid4().hex[:8]}"
        time_limit = int(message.options.get("time_limit", actor.options.get("time_limit", self.default_time_limit_ms)))
        if self._acquire(keys=[key], args=[limit, time_limit + LEASE_MARGIN_MS, token]):
            self._held.slot = (key, token)
            message.options.pop("concurrency_waits", None)  # a later retry starts waiting afresh
            return
        waits = int(message.options.get("concurrency_waits", 0))
        wait = min(FIRST_WAIT_MS * 2**waits, MAX_WAIT_MS)
        wait = int(wait * random.uniform(0.75, 1.25))  # spread the waiting herd
        logger.debug("concurrency limit %d reached for %s; back in %d ms", limit, name, wait)
        broker.enqueue(message.copy(options={"concurrency_waits": waits + 1}), delay=wait)
        raise SkipMessage("concurrency limit reached")

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self._release()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._release()

    def _release(self) -> None:
        slot = getattr(self._held, "slot", None)
        if slot is None:
            return
        self._held.slot = None
        try:
            self.client.zrem(*slot)
        except redis.RedisError:
            logger.warning("could not release a concurrency slot; it lapses with its lease")
