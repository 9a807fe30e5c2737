"""The one way to Redis: every Redis client of the service comes from `redis_for(settings)`.

Alone, Redis is REDIS_URL. With REDIS_SENTINELS it is the primary that the Sentinels name for REDIS_SENTINEL_MASTER
(redis-py's `Sentinel.master_for`); REDIS_URL then gives only the password, the database and TLS. Either way the
client has the same short timeouts, so an unreachable Redis turns into a 503 or a retry within seconds, never a hang.

Through Sentinel, each new connection asks the Sentinels where the primary is, and a connection to a primary that
was demoted meanwhile answers READONLY, which redis-py turns into a ConnectionError after dropping the connection:
to every caller a failover looks like a short outage (retried by the status middleware, or the job waits, as
service/worker/hook_failures.py says), and the next try writes to the new primary.

Scripts: the script cache is not replicated, so a promoted replica knows none of them (NOSCRIPT). A script called
alone loads itself again (redis-py's Script), as the script batcher does (service/store/script_batcher.py); a
pipeline loads its scripts once before its first try only, so ScriptPipeline loads them again on every retry, which
may be on a new primary.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
from redis.client import Pipeline
from redis.connection import SSLConnection, parse_url
from redis.sentinel import Sentinel

from service.settings import Settings

#: Connect fast, wait a little for an answer, check an idle connection before using it, and let the caller decide
#: about timeouts (a write that timed out may have been applied).
CLIENT_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "health_check_interval": 15,
    "retry_on_timeout": False,
}
#: How the client talks to the Sentinels themselves: a dead Sentinel is skipped within a second.
SENTINEL_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 1, "socket_timeout": 1}


class ScriptPipeline(Pipeline):
    """A pipeline that makes sure its scripts are on the server before each try, not only before the first.

    redis-py loads a pipeline's scripts (SCRIPT EXISTS, then SCRIPT LOAD of the missing) before it sends the pipeline,
    then retries the pipeline on a connection error by reconnecting: after a failover the retry lands on a new
    primary that has none of them, and its EVALSHAs would fail with NOSCRIPT."""

    _tries = 0

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        self._tries = 0
        result: list[Any] = super().execute(raise_on_error)
        return result

    def _scripts_again(self) -> None:
        if self._tries and self.scripts:
            self.load_scripts()  # type: ignore[no-untyped-call]  # on self.connection: the one this try runs on
        self._tries += 1

    def _execute_transaction(self, connection: Any, commands: Any, raise_on_error: Any) -> list[Any]:
        self._scripts_again()
        result: list[Any] = super()._execute_transaction(connection, commands, raise_on_error)
        return result

    def _execute_pipeline(self, connection: Any, commands: Any, raise_on_error: Any) -> list[Any]:
        self._scripts_again()
        result: list[Any] = super()._execute_pipeline(connection, commands, raise_on_error)  # type: ignore[no-untyped-call]
        return result


class ServiceRedis(redis.Redis):
    """redis.Redis whose pipelines are ScriptPipelines."""

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> ScriptPipeline:
        return ScriptPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


def connect_redis(url: str, *, decode_responses: bool = True) -> redis.Redis:
    """A client of the one Redis at `url`."""
    return ServiceRedis.from_url(url, decode_responses=decode_responses, **CLIENT_OPTIONS)


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
    sentinel = Sentinel(addresses, sentinel_kwargs=dict(SENTINEL_OPTIONS))  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        master, redis_class=ServiceRedis, decode_responses=decode_responses, **{**CLIENT_OPTIONS, **options}
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
