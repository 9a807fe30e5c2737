"""Every process (web, worker, scheduler) warns at start when Redis may evict or forget what the job store wrote."""

from __future__ import annotations

import logging
from contextlib import ExitStack

import pytest

from service.store.redis_config import findings, warn_if_unsafe
from tests.support.own_redis import OwnRedis
from tests.support.schedulers import SchedulerProcess
from tests.support.web import WebProcess
from tests.support.workers import WorkerProcess

UNSAFE = ("--maxmemory-policy", "allkeys-lru", "--save", "", "--appendonly", "no")
SAFE = ("--maxmemory-policy", "noeviction", "--appendonly", "yes", "--appendfsync", "everysec")
EVICTION_WARNING = "Redis maxmemory-policy is allkeys-lru"
PERSISTENCE_WARNING = 'Redis persists nothing (appendonly no, save "")'
CHECKED = "Redis settings checked"


def test_eviction_and_no_persistence_are_each_named_with_their_fix() -> None:
    with OwnRedis(*UNSAFE) as server:
        found = findings(server.client())
    assert [f.setting for f in found] == ["maxmemory-policy", "appendonly"]
    assert "set maxmemory-policy noeviction" in found[0].problem
    assert "set appendonly yes with appendfsync everysec" in found[1].problem


@pytest.mark.parametrize(
    "settings",
    [SAFE, ("--maxmemory-policy", "noeviction", "--appendonly", "no", "--save", "60 1000")],
    ids=["aof", "rdb"],
)
def test_noeviction_with_aof_or_rdb_is_safe(settings: tuple[str, ...]) -> None:
    with OwnRedis(*settings) as server:
        assert findings(server.client()) == []


def test_a_redis_whose_config_command_is_disabled_says_it_could_not_check(caplog: pytest.LogCaptureFixture) -> None:
    with OwnRedis("--rename-command", "CONFIG", "") as server, caplog.at_level(logging.INFO, "service.redis"):
        found = warn_if_unsafe(server.client(), "web")
    assert [f.setting for f in found] == ["CONFIG"]
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("web: could not check Redis's eviction policy and persistence")
    assert "maxmemory-policy noeviction" in line


def start_every_process(redis_url: str, stack: ExitStack) -> dict[str, str]:
    """web, worker and scheduler on this Redis, started together; each one's log once it has started."""
    env = {"REDIS_URL": redis_url, "LOG_LEVEL": "INFO"}
    web = stack.enter_context(WebProcess(env=env))
    worker = stack.enter_context(WorkerProcess(processes=1, threads=1, queues=["redis-check"], env=env))
    scheduler = stack.enter_context(SchedulerProcess(env=env))
    scheduler.wait_for(lambda out: "scheduler: Redis" in out or "scheduler: could not" in out, timeout=30)
    return {"web": web.output(), "worker": worker.output(), "scheduler": scheduler.output()}


def test_every_process_warns_at_start_against_an_unsafe_redis_and_not_against_a_safe_one() -> None:
    with OwnRedis(*UNSAFE) as unsafe, OwnRedis(*SAFE) as safe, ExitStack() as stack:
        warned = start_every_process(unsafe.url, stack)
        quiet = start_every_process(safe.url, stack)
    for process in ("web", "worker", "scheduler"):
        lines = warned[process].splitlines()
        assert [line for line in lines if f"{process}: {EVICTION_WARNING}" in line], warned[process][-3000:]
        assert [line for line in lines if f"{process}: {PERSISTENCE_WARNING}" in line], warned[process][-3000:]
        assert f"{process}: {CHECKED}" in quiet[process], quiet[process][-3000:]
        assert EVICTION_WARNING not in quiet[process] and PERSISTENCE_WARNING not in quiet[process]
