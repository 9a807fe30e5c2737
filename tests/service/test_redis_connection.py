"""One way to Redis: every client comes from the factory, its pipelines survive a server that forgot their scripts,
and a final outcome waits for the replicas REDIS_WAIT_REPLICAS asks for."""

from __future__ import annotations

import ast
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError
from redis.client import Pipeline
from redis.connection import SSLConnection

from service.domain.states import JobState
from service.settings import Settings
from service.store.connection import connect_redis, primary_through_sentinels, sentinel_address
from service.store.job_store import JobStore
from service.store.script_batcher import NotReplicated
from tests.support.own_redis import OwnRedis

ROOT = Path(__file__).resolve().parents[2]
FACTORY = ROOT / "service" / "store" / "connection.py"
#: What builds a Redis client or pool when called.
CONSTRUCTORS = {"Redis", "StrictRedis", "from_url", "Sentinel", "ConnectionPool", "SentinelConnectionPool"}


def calls_in(path: Path) -> Iterator[tuple[int, str, ast.Call]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            yield node.lineno, name, node


def test_every_redis_client_of_the_service_comes_from_the_one_factory() -> None:
    found = []
    for path in sorted([*(ROOT / "service").rglob("*.py"), *(ROOT / "actors").rglob("*.py")]):
        if path == FACTORY:
            continue
        for line, name, call in calls_in(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if name in CONSTRUCTORS:
                found.append(f"{where} builds a client with {name}()")
            # Dramatiq's results backend builds a client of its own from a URL unless given one from the factory.
            if name == "RedisBackend" and not any(
                k.arg == "client" and isinstance(k.value, ast.Call) and getattr(k.value.func, "id", "") == "redis_for"
                for k in call.keywords
            ):
                found.append(f"{where} builds RedisBackend without client=redis_for(...)")
    assert found == [], "\n".join(found)


def test_sentinels_are_read_as_a_list_of_addresses_with_the_name_of_their_primary() -> None:
    settings = Settings(redis_sentinels="10.0.0.1:26379, sentinel-b:26380,[::1]:26381", redis_sentinel_master="jobs")
    assert settings.redis_sentinels == ["10.0.0.1:26379", "sentinel-b:26380", "[::1]:26381"]
    assert [sentinel_address(a) for a in settings.redis_sentinels] == [
        ("10.0.0.1", 26379), ("sentinel-b", 26380), ("::1", 26381)
    ]  # fmt: skip


def test_through_sentinel_the_password_database_and_tls_of_redis_url_still_apply() -> None:
    # Nothing connects until a command is sent: the pool's options are what every connection to the primary gets.
    client = primary_through_sentinels(["127.0.0.1:1"], "jobs", "redis://user:s3cret@ignored:6379/4")
    options = client.connection_pool.connection_kwargs
    assert (options["username"], options["password"], options["db"]) == ("user", "s3cret", 4)
    assert options["socket_timeout"] == 5 and options["decode_responses"] is True
    assert type(client.connection_pool).__name__ == "SentinelConnectionPool"
    secure = primary_through_sentinels(["127.0.0.1:1"], "jobs", "rediss://:s3cret@ignored:6380/0")
    assert issubclass(secure.connection_pool.connection_class, SSLConnection)


def test_sentinels_without_the_primarys_name_stop_the_process_with_a_line_naming_it() -> None:
    with pytest.raises(ValidationError, match="REDIS_SENTINEL_MASTER must name the primary"):
        Settings(redis_sentinels="127.0.0.1:26379")
    with pytest.raises(ValidationError, match="'sentinel-b' is not host:port"):
        Settings(redis_sentinels="sentinel-b", redis_sentinel_master="jobs")


def test_final_outcomes_wait_for_one_replica_through_sentinel_and_for_none_without() -> None:
    assert Settings(redis_sentinels="").redis_replicas_to_wait == 0
    assert Settings(redis_sentinels="s:26379", redis_sentinel_master="jobs").redis_replicas_to_wait == 1
    assert Settings(redis_sentinels="s:26379", redis_sentinel_master="jobs", redis_wait_replicas=0)\
        .redis_replicas_to_wait == 0  # fmt: skip


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    with OwnRedis() as server:
        yield server


class ForgetfulServer(Pipeline):
    """A pipeline whose server, right after the pipeline made sure of its scripts, forgets them and drops the
    pipeline's connection: what a failover looks like from a pipeline that has just checked its scripts."""

    loads = 0

    def load_scripts(self) -> None:
        super().load_scripts()  # type: ignore[no-untyped-call]
        type(self).loads += 1
        if type(self).loads == 1:
            admin = redis.Redis(connection_pool=self.connection_pool)
            admin.script_flush()
            admin.client_kill_filter(_type="normal", skipme=True)  # the pipeline's connection among them


def test_a_pipeline_cut_off_after_checking_its_scripts_fails_for_its_caller_and_the_next_try_loads_them(
    own_redis: OwnRedis,
) -> None:
    client = connect_redis(own_redis.url)
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    key = f"pipeline-probe:{uuid.uuid4().hex}"

    def run() -> list[Any]:
        pipe = ForgetfulServer(client.connection_pool, client.response_callbacks, False, None)
        script(keys=[key], client=pipe)
        script(keys=[key], client=pipe)
        result: list[Any] = pipe.execute()
        return result

    # Not NoScriptError: the client does not retry on another connection, where EVALSHA would find no script.
    with pytest.raises(redis.ConnectionError):
        run()
    assert ForgetfulServer.loads == 1, "the situation was not reached: the pipeline never checked its scripts"
    assert client.script_exists(script.sha) == [False]
    assert run() == [1, 2]  # the caller's next try checks again, and loads them
    assert client.script_exists(script.sha) == [True]


def record(job_id: str) -> dict[str, Any]:
    return {"jobId": job_id, "actor": "probe", "queue": "default", "data": "{}", "priority": "normal",
            "createdMs": int(time.time() * 1000), "createdAt": "2026-12-03T00:00:00.000Z"}  # fmt: skip


def waits(server: OwnRedis) -> int:
    stats: dict[str, Any] = server.client().info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


def in_sync(replica: OwnRedis, timeout: float = 10.0) -> OwnRedis:
    deadline = time.monotonic() + timeout
    while replica.client().info("replication")["master_link_status"] != "up":
        assert time.monotonic() < deadline, f"replica on {replica.port} not in sync after {timeout} s"
        time.sleep(0.05)
    return replica


def test_a_final_outcome_waits_for_a_replica_and_the_other_transitions_do_not() -> None:
    primary = OwnRedis("--repl-diskless-sync-delay", "0")
    with primary, OwnRedis("--replicaof", "127.0.0.1", str(primary.port)) as replica:
        in_sync(replica)
        store = JobStore(connect_redis(primary.url), replicas_to_wait=1, replica_wait_ms=2000)
        job_id = uuid.uuid4().hex
        store.transition(job_id, JobState.QUEUED, create=record(job_id))
        active = store.transition(job_id, JobState.ACTIVE, lease=("probe:1", 30_000))
        assert waits(primary) == 0
        done = store.transition(job_id, JobState.COMPLETED, fields={"result": "1"}, token=active.token)
        assert done.applied and waits(primary) == 1
        assert replica.client().hget(f"jobs:job:{job_id}", "state") == "completed"  # there when the call returned


def test_a_final_outcome_no_replica_took_in_time_is_not_done_and_a_later_try_is() -> None:
    with OwnRedis("--repl-diskless-sync-delay", "0") as primary:
        store = JobStore(connect_redis(primary.url), replicas_to_wait=1, replica_wait_ms=100)
        job_id = uuid.uuid4().hex
        store.transition(job_id, JobState.QUEUED, create=record(job_id))
        active = store.transition(job_id, JobState.ACTIVE, lease=("probe:1", 30_000))  # not final: no wait
        with pytest.raises(NotReplicated, match="only 0 of 1 replicas had the write after 100 ms"):
            store.transition(job_id, JobState.COMPLETED, fields={"result": "1"}, token=active.token)
        assert primary.client().hget(f"jobs:job:{job_id}", "state") == "completed"  # written, but not safe yet
        with OwnRedis("--replicaof", "127.0.0.1", str(primary.port)) as replica:
            in_sync(replica)
            again = store.transition(job_id, JobState.COMPLETED, fields={"result": "1"}, token=active.token)
            assert (again.applied, again.state) == (False, "completed")  # as a retried outcome finds it
            assert replica.client().hget(f"jobs:job:{job_id}", "state") == "completed"
