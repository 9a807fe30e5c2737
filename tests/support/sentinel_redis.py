"""Redis with Sentinel of the test's own: one primary, two replicas and three Sentinels, each an `OwnRedis`.

The servers replicate from, and the Sentinels monitor and announce, `address`: 127.0.0.1, or a `TestNetwork` address
(given as `also_listen`) when processes in network namespaces must reach them, since a Sentinel hands its clients the
address it monitors. Every server and Sentinel listens on 127.0.0.1 too. A primary is down after 1 s without an
answer and two Sentinels must agree, so a SIGKILLed primary is replaced within seconds.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

import redis

from tests.support.own_redis import OwnRedis
from tests.support.own_servers import HOST, ServerDidNotStart, log_tail

#: The two Sentinels out of three that must agree that the primary is down.
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
#: A replica that connects is sent the data at once (Redis 7 waits 5 s for more replicas to share one transfer).
DATA_SERVER_OPTIONS = ("--repl-diskless-sync-delay", "0")
#: Every call to a server or Sentinel gives up after this; a dead one must not stall the test.
CALL_TIMEOUT_S = 1.0


class SentinelRedis:
    """`start()` brings up a primary, replicas of it and Sentinels that all know each other; `kill_primary()` and
    `wait_for_new_primary()` make and follow a failover; `restart_as_replica()` brings the old primary back."""

    def __init__(self, *, replicas: int = 2, sentinels: int = 3, also_listen: str | None = None) -> None:
        #: What the servers replicate from and the Sentinels announce: reachable wherever the clients are.
        self.address = also_listen or HOST
        self.master_name = f"jobs-{uuid.uuid4().hex[:6]}"
        self.servers: list[OwnRedis] = []
        self.sentinels: list[OwnRedis] = []
        try:
            for _ in range(1 + replicas):
                self.servers.append(OwnRedis(also_listen=also_listen))
            for _ in range(sentinels):
                self.sentinels.append(OwnRedis(also_listen=also_listen, sentinel=True))
        except BaseException:
            self.close()
            raise
        #: How long `start()` took, until every Sentinel knew every replica and the other Sentinels (for reports).
        self.start_seconds: float | None = None

    def _data_options(self, replica_of: OwnRedis | None) -> list[str]:
        options = [*DATA_SERVER_OPTIONS, "--replica-announce-ip", self.address]
        if replica_of is not None:
            options += ["--replicaof", self.address, str(replica_of.port)]
        return options

    def start(self, timeout: float = 60.0) -> SentinelRedis:
        """Primary, then replicas in sync with it, then Sentinels; returns once the Sentinels know the whole set-up."""
        began = time.monotonic()
        deadline = began + timeout
        primary, *replicas = self.servers
        primary.args = self._data_options(None)
        primary.start()
        for replica in replicas:
            replica.args = self._data_options(primary)
            replica.start()
        for replica in replicas:
            self._wait_in_sync(replica, deadline)
        name = self.master_name
        for sentinel in self.sentinels:
            sentinel.args = [
                *("--sentinel", "monitor", name, self.address, str(primary.port), str(QUORUM)),
                *("--sentinel", "down-after-milliseconds", name, str(DOWN_AFTER_MS)),
                *("--sentinel", "failover-timeout", name, str(FAILOVER_TIMEOUT_MS)),
                *("--sentinel", "announce-ip", self.address),
            ]
            sentinel.start()
        self._wait_until_sentinels_know_all(deadline)
        self.start_seconds = time.monotonic() - began
        return self

    def sentinel_addresses(self, address: str | None = None) -> list[str]:
        """`host:port` of each Sentinel, as REDIS_SENTINELS lists them; on `self.address` unless told otherwise."""
        return [f"{address or self.address}:{sentinel.port}" for sentinel in self.sentinels]

    def environment(self) -> dict[str, str]:
        """The service's variables (CONTRACT.md) for Redis through these Sentinels."""
        return {"REDIS_SENTINELS": ",".join(self.sentinel_addresses()), "REDIS_SENTINEL_MASTER": self.master_name}

    def _sentinel_client(self, sentinel: OwnRedis) -> redis.Redis:
        return sentinel.client(socket_timeout=CALL_TIMEOUT_S, socket_connect_timeout=CALL_TIMEOUT_S)

    def named_by(self, sentinel: OwnRedis) -> tuple[str, int] | str:
        """The primary's address as this Sentinel names it, or why it names none."""
        client = self._sentinel_client(sentinel)
        try:
            address = client.sentinel_get_master_addr_by_name(self.master_name)
        except redis.RedisError as error:
            return repr(error)
        finally:
            client.close()
        if not isinstance(address, (tuple, list)):
            return f"no primary by the name {self.master_name}"
        return str(address[0]), int(address[1])

    def primary_address(self) -> tuple[str, int]:
        """The primary as the first Sentinel that answers names it."""
        answers = [self.named_by(sentinel) for sentinel in self.sentinels]
        for answer in answers:
            if isinstance(answer, tuple):
                return answer
        raise AssertionError(f"no Sentinel names a primary for {self.master_name}: {answers}")

    def server_on(self, port: int) -> OwnRedis:
        for server in self.servers:
            if server.port == port:
                return server
        raise AssertionError(f"no server of this set-up on port {port}")

    def primary(self) -> OwnRedis:
        """The server the Sentinels name as primary now."""
        return self.server_on(self.primary_address()[1])

    def kill_primary(self) -> OwnRedis:
        """SIGKILL the primary the Sentinels name; returns it (down, its data gone with it)."""
        primary = self.primary()
        primary.kill()
        return primary

    def wait_for_new_primary(self, instead_of: OwnRedis, timeout: float = 20.0) -> OwnRedis:
        """Until every Sentinel names another server as primary and that server says it is one; fails at `timeout`
        with the Sentinels' logs."""
        deadline = time.monotonic() + timeout
        while True:
            named = {self.named_by(sentinel) for sentinel in self.sentinels}
            if len(named) == 1 and isinstance(address := named.pop(), tuple) and address[1] != instead_of.port:
                promoted = self.server_on(address[1])
                if self._role(promoted) == "master":
                    return promoted
            if time.monotonic() > deadline:
                logs = "\n".join(log_tail(s.folder / "redis.log", 1200) for s in self.sentinels)
                raise AssertionError(f"no new primary announced {timeout} s after {instead_of.port} went:\n{logs}")
            time.sleep(0.1)

    def restart_as_replica(self, server: OwnRedis, timeout: float = 30.0) -> None:
        """Start a killed server again as a replica of the current primary (so it never serves its empty data set
        as a primary), and return once it is in sync and the Sentinels count it again."""
        assert not server.running(), f"server on {server.port} still runs"
        deadline = time.monotonic() + timeout
        server.args = self._data_options(self.primary())
        server.start()
        self._wait_in_sync(server, deadline)
        self._wait_until_sentinels_know_all(deadline)

    def _role(self, server: OwnRedis) -> str | None:
        client = server.client(socket_timeout=CALL_TIMEOUT_S, socket_connect_timeout=CALL_TIMEOUT_S)
        try:
            return str(client.role()[0])
        except redis.RedisError:
            return None
        finally:
            client.close()

    def _wait_in_sync(self, replica: OwnRedis, deadline: float) -> None:
        client = replica.client(socket_timeout=CALL_TIMEOUT_S, socket_connect_timeout=CALL_TIMEOUT_S)
        try:
            while True:
                info = client.info("replication")
                if info.get("master_link_status") == "up":
                    return
                if time.monotonic() > deadline:
                    raise ServerDidNotStart(f"replica on {replica.port} not in sync: {info}")
                time.sleep(0.05)
        finally:
            client.close()

    def _wait_until_sentinels_know_all(self, deadline: float) -> None:
        """Sentinels learn replicas from the primary's INFO and each other from hello messages (every 2 s); a failover
        before they did might find no replica to promote or no quorum."""
        replicas = sum(1 for server in self.servers if server.running()) - 1
        for sentinel in self.sentinels:
            client = self._sentinel_client(sentinel)
            try:
                while True:
                    seen = client.sentinel_slaves(self.master_name)
                    known_replicas = [replica for replica in seen if "s_down" not in replica["flags"]]
                    known_sentinels = cast(list[dict[str, Any]], client.sentinel_sentinels(self.master_name))
                    if len(known_replicas) >= replicas and len(known_sentinels) >= len(self.sentinels) - 1:
                        break
                    if time.monotonic() > deadline:
                        raise ServerDidNotStart(
                            f"Sentinel on {sentinel.port} knows {len(known_replicas)} replicas and"
                            f" {len(known_sentinels)} other Sentinels:\n{log_tail(sentinel.folder / 'redis.log')}"
                        )
                    time.sleep(0.1)
            finally:
                client.close()

    def close(self) -> None:
        for server in [*self.sentinels, *self.servers]:
            server.close()

    def __enter__(self) -> SentinelRedis:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
