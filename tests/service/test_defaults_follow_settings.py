"""Defaults come from the settings, not from copies that drift: a concurrency slot lasts as long as the job's lease
(JOB_LEASE_MS), and a skipped tick's record keeps no more payload than MAX_PAYLOAD_BYTES."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import pytest

from service.bootstrap import broker, settings
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.store import keys
from service.store.limits import LimitStore
from service.worker.middleware.lease import JobLease
from service.worker.middleware.limits import Limits
from service.worker.middleware.periodic import PeriodicJobs
from service.worker.middleware.status import StatusMiddleware


@dataclass
class Declared:
    options: dict[str, Any] = field(default_factory=dict)
    actor_name: str = "long_one"


class Actors:
    """What the middlewares ask a broker for: the declared actor's options."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.actor = Declared(options)

    def get_actor(self, name: str) -> Declared:
        return self.actor

    def enqueue(self, message: Any, delay: int | None = None) -> Any:
        raise AssertionError("a free slot must not send the message back")


def test_a_concurrency_slot_lasts_the_lease_from_job_lease_ms_not_the_time_limit(jobs: Jobs) -> None:
    an_hour = 3_600_000
    limit = Limits(LimitStore(jobs.store.client), jobs.store, lease_ms=an_hour, max_payload_bytes=1000)
    actors = Actors({"concurrency_limit": 1})
    limit.before_declare_actor(actors, Declared(actors.actor.options, "long_one"))  # type: ignore[arg-type]
    message = dramatiq.Message(queue_name="q", actor_name="long_one", args=(), kwargs={}, options={})
    before_ms = time.time() * 1000
    limit.before_process_message(actors, message)  # type: ignore[arg-type]
    slots = keys.limit("concurrency_limit", "long_one")
    try:
        ((_, expires_ms),) = jobs.store.client.zrange(slots, 0, -1, withscores=True)
        # A lease's life (renewed with it), whatever the job's time limit.
        assert before_ms + an_hour - 1000 <= expires_ms <= time.time() * 1000 + an_hour
    finally:
        limit.after_process_message(actors, message)  # type: ignore[arg-type]
    assert jobs.store.client.zcard(slots) == 0


def test_a_skipped_late_tick_keeps_no_more_payload_than_max_payload_bytes(jobs: Jobs) -> None:
    periodic = PeriodicJobs(jobs.store, grace_s=1, max_payload_bytes=100)
    an_hour_ago = int(time.time() * 1000) - 3_600_000
    message = dramatiq.Message(queue_name="q", actor_name="tick", args=(), kwargs={"text": "x" * 500},
                               options={"scheduled_at": an_hour_ago}, message_timestamp=an_hour_ago)  # fmt: skip
    with pytest.raises(dramatiq.middleware.SkipMessage):
        periodic.before_process_message(Actors({}), message)  # type: ignore[arg-type]
    record = jobs.store.get(message.message_id)
    assert record is not None and record.state is JobState.CANCELLED
    # The situation: the payload was over the limit given, and under the 262,144 bytes of the old fixed copy.
    assert record.data == {"omitted": "511 bytes, over the 100-byte limit"}


@pytest.mark.parametrize(
    ("middleware", "parameters"),
    [(StatusMiddleware, {"max_payload_bytes", "lease_ms", "outage_grace_s"}), (JobLease, {"lease_ms"})],
)
def test_the_lease_and_payload_limits_of_the_middleware_have_no_default_of_their_own(
    middleware: type, parameters: set[str]
) -> None:
    signature = inspect.signature(middleware.__init__)
    assert {name for name in parameters if signature.parameters[name].default is not inspect.Parameter.empty} == set()


def test_the_workers_middleware_takes_its_limits_from_the_settings() -> None:
    status = next(m for m in broker.middleware if isinstance(m, StatusMiddleware))
    lease = next(m for m in broker.middleware if isinstance(m, JobLease))
    assert (status.max_payload_bytes, status.lease_ms, status.outage_grace_s) == (
        settings.max_payload_bytes,
        settings.job_lease_ms,
        settings.job_store_retry_s,
    )
    assert lease.lease_ms == settings.job_lease_ms
    limits = next(m for m in broker.middleware if isinstance(m, Limits))
    assert (limits.lease_ms, limits.max_payload_bytes) == (settings.job_lease_ms, settings.max_payload_bytes)
