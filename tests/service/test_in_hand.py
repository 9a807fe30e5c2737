"""The jobs a worker process has in hand: one entry per message, there for every hook, gone however it ends.

Each test runs the real broker's middleware list on the test's own thread, as Dramatiq's worker thread does (with
the job store on this run's Redis database), and looks at the registry from inside the actor and afterwards.
"""

from __future__ import annotations

from typing import Any

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.middleware import SkipMessage

from service.bootstrap import broker
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.store.job_store import JobStore
from service.worker.middleware.in_hand import InHand, JobsInHand
from service.worker.middleware.status import StatusMiddleware

in_hand = next(m for m in broker.middleware if isinstance(m, JobsInHand))
seen: list[InHand | None] = []


@dramatiq.actor(queue_name="in-hand-test", max_retries=0)
def look_at_my_entry() -> None:
    entry = in_hand.mine()
    seen.append(entry)
    assert entry is not None and entry.running


def process(message: dramatiq.Message[Any]) -> str:
    """What Dramatiq's worker thread does with a message, short of fetching and acknowledging it."""
    proxy = MessageProxy(message)
    try:
        broker.emit_before("process_message", proxy)
        broker.get_actor(proxy.actor_name)(*proxy.args, **proxy.kwargs)
        broker.emit_after("process_message", proxy, result=None)
        return "processed"
    except SkipMessage:
        broker.emit_after("skip_message", proxy)
        return "skipped"


def test_a_job_is_in_hand_with_its_lease_while_it_runs_and_gone_once_its_outcome_is_recorded(jobs: Jobs) -> None:
    seen.clear()
    message = look_at_my_entry.message()
    assert process(message) == "processed"

    entry = seen[0]
    assert entry is not None and entry.job_id == message.message_id and entry.queue == "in-hand-test"
    assert entry.active_at is not None and entry.thread >= 1
    assert not entry.running and entry.lease is None  # the run ended, the lease was released after the outcome
    assert in_hand.mine() is None and in_hand.runs() == {}
    record = jobs.store.get(message.message_id)
    assert record is not None and record.state is JobState.COMPLETED


def test_a_message_whose_job_is_final_already_is_skipped_and_leaves_nothing_in_hand(jobs: Jobs) -> None:
    seen.clear()
    message = look_at_my_entry.message()
    assert process(message) == "processed"
    assert process(message) == "skipped"  # a redelivered copy of a completed job
    assert len(seen) == 1
    assert in_hand.mine() is None and len(in_hand) == 0


def test_a_check_that_cannot_be_made_leaves_nothing_in_hand(jobs: Jobs) -> None:
    seen.clear()
    status = next(m for m in broker.middleware if isinstance(m, StatusMiddleware))
    real_store, grace = status.store, status.outage_grace_s
    # The situation: the job store is unreachable when "active" is to be written (nothing listens on port 1).
    status.store = JobStore(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5))
    status.outage_grace_s = 0
    try:
        assert process(look_at_my_entry.message()) == "skipped"
    finally:
        status.store, status.outage_grace_s = real_store, grace
    assert seen == []  # the job did not run
    assert in_hand.mine() is None and len(in_hand) == 0
