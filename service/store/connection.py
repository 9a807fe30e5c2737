"""The one way to Redis: every Redis client of the service comes from `redis_for(settings)`.

Alone, Redis is REDIS_URL. With REDIS_SENTINELS it is the primary that the Sentinels name for REDIS_SENTINEL_MASTER
(redis-py's `Sentinel.master_for`); REDIS_URL then gives only the password, the database and TLS. Either way the
client has the same short timeouts, so an unreachable Redis turns into a 503 or a retry within seconds, never a hang.

Through Sentinel, each new connection asks the Sentinels where the primary is, and a connection to a primary that
was demoted meanwhile answers READONLY, which redis-py turns into a ConnectionError after dropping the connection:
to every caller a failover looks like a short outage (retried by the status middleware, or the job waits, as
service/worker/hook_failures.py says), and the next try writes to the new primary.

No client retries on its own (`retry` below): the caller decides, as for any outage. That also keeps scripts right
after a failover. The script cache is not replicated, so a promoted replica knows none of them (NOSCRIPT): a script
called alone loads itself again (redis-py's Script), as the script batcher does (service/store/script_batcher.py);
a pipeline makes sure of its scripts (SCRIPT EXISTS, SCRIPT LOAD) and then runs on that same connection, so it
could meet NOSCRIPT only if a retry took it to another server in between. Without retries, a connection lost there
fails the call, and the caller's next try loads the scripts where it runs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.connection import SSLConnection, parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

from service.settings import Settings

#: Connect fast, wait a little for an answer, check an idle connection before using it, and never try again inside
#: the client: the caller decides (a write that timed out may have been applied; a pipeline must not be retried on
#: another server, see above).
CLIENT_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "health_check_interval": 15,
    "retry_on_timeout": False,
    "retry": Retry(NoBackoff(), 0),
}
#: How the client talks to the Sentinels themselves: a dead Sentinel is skipped within a second.
SENTINEL_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 1, "socket_timeout": 1}


class FollowingSentinel(Sentinel):
    """redis-py's Sentinel, that does not take the primary from a Sentinel in the middle of a failover.

    redis-py reads SENTINEL MASTERS from the first Sentinel that answers; the Sentinel leading a failover still lists
    the old primary there (not as down, when it was demoted alive) until the failover ends, seconds later, while
    every other Sentinel already names the new one. Taken from it, connections would go back to the demoted primary
    and meet READONLY again and again."""

    def check_master_state(self, state: dict[str, Any], service_name: str) -> bool:
        if "failover_in_progress" in str(state.get("flags", "")).split(","):
            return False
        return bool(super().check_master_state(state, service_name))  # type: ignore[no-untyped-call]


def connect_redis(url: str, *, decode_responses: bool = True) -> redis.Redis:
    """A client of the one Redis at `url`."""
    return redis.Redis.from_url(url, decode_responses=decode_responses, **CLIENT_OPTIONS)


def sentinel_address(address: str) -> tuple[str, int]:
    """("host", port) of one REDIS_SENTINELS entry: host:port, [v6 address]:port."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def primary_through_sentinels(
    sentinels: list[str], master: str, url: str, *, decode_responses: bool = True
) -> redis.Redis:
    """A client of the primary that `sentinels` name for `master`, with the password, database and TLS of `url`."""
    parsed: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    options = {k: v for k, v in parsed.items() if k not in ("host", "port", "path")}
    if options.pop("connection_class", None) is SSLConnection or urlsplit(url).scheme == "rediss":
        options["ssl"] = True  # the Sentinel pool picks its TLS connection class from this
    addresses = [sentinel_address(a) for a in sentinels]
    sentinel = FollowingSentinel(addresses, sentinel_kwargs=dict(SENTINEL_OPTIONS))  # type: ignore[no-untyped-call, unused-ignore]
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
        master, decode_responses=decode_responses, **{**CLIENT_OPTIONS, **options}
    )
    return client


def redis_for(settings: Settings, *, decode_responses: bool = True) -> redis.Redis:
    """The service's Redis, alone or through Sentinel as the settings say. `decode_responses=False` for clients that
    read bytes (Dramatiq's results backend)."""
    if settings.redis_sentinels:
        return primary_through_sentinels(
            settings.redis_sentinels, settings.redis_sentinel_master, settings.redis_url,
            decode_responses=decode_responses,
        )  # fmt: skip
    return connect_redis(settings.redis_url, decode_responses=decode_responses)
