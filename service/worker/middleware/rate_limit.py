"""Rate limits shared by every worker through Redis; a limited message waits, it is not failed or counted."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware, SkipMessage

from service.domain.rates import parse_rate
from service.store import keys

logger = logging.getLogger(__name__)

# Increments the counter of the current window and says whether the caller is still within the limit.
_TAKE = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n <= tonumber(ARGV[1]) and 1 or 0
"""


class RateLimit(Middleware):
    """Actor option `rate_limit="100/s"`; `rate_limit_key=fn(message) -> str` splits the limit (per host, say)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._take = client.register_script(_TAKE)

    @property
    def actor_options(self) -> set[str]:
        return {"rate_limit", "rate_limit_key"}

    def after_declare_actor(self, broker: dramatiq.Broker, actor: dramatiq.Actor[Any, Any]) -> None:
        spec = actor.options.get("rate_limit")
        if spec:
            parse_rate(spec)  # fail at import, not at the first message

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        actor = broker.get_actor(message.actor_name)
        spec = actor.options.get("rate_limit")
        if not spec:
            return
        count, window_ms = parse_rate(spec)
        key_fn: Callable[[Any], str] | None = actor.options.get("rate_limit_key")
        name = message.actor_name + (f":{key_fn(message)}" if key_fn else "")
        now = int(time.time() * 1000)
        window = now // window_ms
        if self._take(keys=[keys.rate_window(name, window)], args=[count, window_ms * 2]):
            return
        # Over the limit: put it back for the next window, spread out so the herd does not return at once.
        wait = (window + 1) * window_ms - now + random.randint(0, max(1, window_ms // 2))
        logger.debug("rate limit %s reached for %s; delayed %d ms", spec, name, wait)
        broker.enqueue(message, delay=wait)
        raise SkipMessage("rate limited")
