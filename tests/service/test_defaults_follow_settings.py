"""Defaults come from the settings, not from copies that drift: a concurrency slot lasts as long as JOB_TIME_LIMIT_MS
allows the job to run, and a skipped tick's record keeps no more payload than MAX_PAYLOAD_BYTES."""

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
from service.worker.middleware.concurrency import LEASE_MARGIN_MS, ConcurrencyLimit
from service.worker.middleware.lease import JobLease
from service.worker.middleware.periodic import PeriodicJobs
from service.worker.middleware.status import StatusMiddleware


@dataclass
class Declared:
    options: dict[str, Any] = field(default_factory=dict)


class Actors:
    """What the middlewares ask a broker for: the declared actor's options."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.actor = Declared(options)

    def get_actor(self, name: str) -> Declared:
        return self.actor

    def enqueue(self, message: Any, delay: int | None = None) -> Any:
        raise AssertionError("a free slot must not send the message back")


def test_a_concurrency_slot_lasts_the_jobs_time_limit_from_job_time_limit_ms(jobs: Jobs) -> None:
    an_hour = 3_600_000
    limit = ConcurrencyLimit(jobs.store.client, default_time_limit_ms=an_hour)
    message = dramatiq.Message(queue_name="q", actor_name="long_one", args=(), kwargs={}, options={})
    before_ms = time.time() * 1000
    limit.before_process_message(Actors({"concurrency_limit": 1}), message)  # type: ignore[arg-type]
    try:
        ((_, expires_ms),) = jobs.store.client.zrange(keys.semaphore("long_one"), 0, -1, withscores=True)
        # The old fallback (300,000 ms) would have let another worker take the slot after 5.5 minutes.
        assert expires_ms >= before_ms + an_hour + LEASE_MARGIN_MS - 1000
    finally:
        limit.after_process_message(Actors({}), message)  # type: ignore[arg-type]
    assert jobs.store.client.zcard(keys.semaphore("long_one")) == 0


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
