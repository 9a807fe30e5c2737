"""The real `jobs` executable against a Redis past its maxmemory: one line naming Redis and exit status 4, never a
traceback (before: the claim and the pause flag raised OutOfMemoryError, exit 70 "unexpected error")."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors.ping import ping
from service.bootstrap import broker
from service.domain.states import JobState
from service.store.connection import connect_redis
from service.store.job_store import JobStore
from service.store.record_fields import record_fields
from tests.support.cli import run_jobs
from tests.support.own_redis import OwnRedis

FULL = "redis is out of memory (maxmemory reached) and refuses writes"


@pytest.fixture(scope="module")
def full_redis() -> Iterator[tuple[str, str]]:
    """(its URL, a failed job recorded while there was room)."""
    with OwnRedis("--maxmemory-policy", "noeviction") as server:
        store = JobStore(connect_redis(server.url))
        message = ping.message_with_options(kwargs={})
        store.transition(message.message_id, JobState.QUEUED, create=record_fields(message, 262_144))
        assert store.transition(message.message_id, JobState.FAILED, fields={"failedReason": "boom"}).applied
        server.fill()
        yield server.url, message.message_id


def assert_one_line(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], err


@pytest.mark.parametrize("command", [["send", "ping", "{}"], ["pause", "default"], ["retry", "FAILED"]])
def test_every_command_that_writes_is_one_line_naming_redis_and_exit_status_four(
    full_redis: tuple[str, str], command: list[str]
) -> None:
    url, failed_id = full_redis
    broker.declare_queue("default", ensure=True)
    broker.flush("default")
    done = run_jobs(*[failed_id if word == "FAILED" else word for word in command], env={"REDIS_URL": url})
    assert done.code == 4, done.err
    assert_one_line(done.err, FULL)
    assert broker.channel.queue_declare("default", passive=True).method.message_count == 0
