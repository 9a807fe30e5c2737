"""Key lanes of a fair queue (FAIR_QUEUES=fair-* for the tests): each key is given a lane in turn and keeps it, its
jobs are published there, a delayed or retried job comes back to its lane, a job without a key goes to the queue
itself, Redis away gives a hash of the key instead of failing the send, and no job is lost on the way."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from service.bootstrap import broker, pauses, redis_client
from service.rabbit.link import RabbitLink, lanes_of, routing_key, shape_of
from service.rabbit.queue_types import LANE_OPTION
from service.store import keys
from service.store.fair_lane_store import LANE_TTL_MS, FairLaneStore
from service.web import app
from service.worker.middleware.fair_lanes import FairLanes, hashed_lane
from tests.support.fair_actors import FAIR_QUEUE, PLAIN_QUEUE, fair_tenant_job, plain_tenant_job, runs
from tests.support.polling import wait_for
from tests.support.workers import WorkerProcess

LANES = shape_of(broker).fair_lanes


def ready(queue: str) -> int:
    return int(broker.channel.queue_declare(queue, passive=True).method.message_count)


def lane_counts() -> dict[str, int]:
    """Ready messages per lane of the fair queue, the empty ones left out."""
    return {lane: n for lane in lanes_of(broker, FAIR_QUEUE) if (n := ready(lane))}


@pytest.fixture(autouse=True)
def empty_queues() -> Iterator[None]:
    for queue in (FAIR_QUEUE, PLAIN_QUEUE):
        broker.declare_queue(queue, ensure=True)
        broker.flush(queue)
        pauses.resume(queue)
    yield
    for queue in (FAIR_QUEUE, PLAIN_QUEUE):
        broker.flush(queue)
        pauses.resume(queue)


def test_a_fair_queue_has_a_lane_per_key_slot_declared_like_the_queue_itself() -> None:
    assert lanes_of(broker, FAIR_QUEUE) == [FAIR_QUEUE, *(f"{FAIR_QUEUE}.K{n}" for n in range(LANES))]
    assert lanes_of(broker, PLAIN_QUEUE) == [PLAIN_QUEUE]
    for lane in lanes_of(broker, FAIR_QUEUE):
        assert ready(lane) == 0  # declared (a passive declare of a missing queue closes the channel with 404)


def test_new_keys_take_the_lanes_in_turn_and_a_key_keeps_its_lane() -> None:
    fair = FairLanes(FairLaneStore(redis_client))
    given = [fair.lane(FAIR_QUEUE, f"tenant-{n}", LANES) for n in range(LANES)]
    assert sorted(given) == list(range(LANES))  # round robin: no two of the first LANES keys share a lane
    assert fair.lane(FAIR_QUEUE, "tenant-3", LANES) == given[3]
    again = FairLanes(FairLaneStore(redis_client))  # another process: Redis, not the cache, answers
    assert [again.lane(FAIR_QUEUE, f"tenant-{n}", LANES) for n in range(LANES)] == given
    ttl = redis_client.pttl(keys.fair_lane(FAIR_QUEUE, "tenant-3"))
    assert LANE_TTL_MS - 60_000 < ttl <= LANE_TTL_MS  # a key not sent for 15 minutes gives its lane up


def test_keyed_jobs_are_published_to_their_lane_and_jobs_without_a_key_to_the_queue_itself() -> None:
    for n in range(3):
        fair_tenant_job.send(tenant="acme", n=n)
    fair_tenant_job.send(tenant="globex", n=3)
    fair_tenant_job.send(n=4)  # no key
    plain_tenant_job.send(tenant="acme", n=5)
    acme = FairLanes(FairLaneStore(redis_client)).lane(FAIR_QUEUE, "acme", LANES)
    globex = FairLanes(FairLaneStore(redis_client)).lane(FAIR_QUEUE, "globex", LANES)
    assert acme != globex
    assert lane_counts() == {f"{FAIR_QUEUE}.K{acme}": 3, f"{FAIR_QUEUE}.K{globex}": 1, FAIR_QUEUE: 1}
    assert ready(PLAIN_QUEUE) == 1  # a queue not in FAIR_QUEUES is as it was


def test_the_api_sends_to_the_lane_and_get_queues_and_purge_count_every_lane() -> None:
    with TestClient(app) as client:
        for tenant in ("a", "b", "c"):
            answer = client.post(f"/jobs/{fair_tenant_job.actor_name}/batch", json=[{"tenant": tenant}] * 2)
            assert answer.status_code == 202, answer.text
        assert len(lane_counts()) == 3
        figures = {q["name"]: q for q in client.get("/queues").json()}
        assert figures[FAIR_QUEUE]["waiting"] == 6
        assert client.post(f"/queues/{FAIR_QUEUE}/purge").status_code == 202
        wait_for(lambda: not lane_counts(), "the purge to empty every lane")
        assert (
            client.get("/queues").json()
            and {q["name"]: q for q in client.get("/queues").json()}[FAIR_QUEUE]["waiting"] == 0
        )


def test_with_redis_away_the_lane_is_a_hash_of_the_key_and_the_send_goes_on() -> None:
    away = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    with pytest.raises(redis.ConnectionError):
        away.ping()  # the situation: Redis does not answer
    fair = FairLanes(FairLaneStore(away))
    message = fair_tenant_job.message_with_options(kwargs={"tenant": "initech"})
    fair.before_enqueue(broker, message, None)
    assert message.options[LANE_OPTION] == hashed_lane("initech", LANES)
    assert routing_key(broker, message) == f"{FAIR_QUEUE}.K{hashed_lane('initech', LANES)}"
    started = time.monotonic()
    fair.before_enqueue(broker, fair_tenant_job.message_with_options(kwargs={"tenant": "other"}), None)
    assert time.monotonic() - started < 0.1  # after one failure Redis is left alone for a while, not asked each send


def test_a_lane_out_of_range_is_given_again_or_dropped_for_a_message_without_key() -> None:
    fair = FairLanes(FairLaneStore(redis_client))
    stale = fair_tenant_job.message_with_options(kwargs={"tenant": "acme"}, lane=LANES + 5)  # FAIR_LANES lowered
    fair.before_enqueue(broker, stale, None)
    assert stale.options[LANE_OPTION] == fair.lane(FAIR_QUEUE, "acme", LANES)
    keyless = fair_tenant_job.message_with_options(kwargs={}, lane=LANES)
    fair.before_enqueue(broker, keyless, None)
    assert LANE_OPTION not in keyless.options
    assert routing_key(broker, keyless) == FAIR_QUEUE


@pytest.mark.slow
def test_a_delayed_job_and_a_retried_one_come_back_to_their_own_lane() -> None:
    lane = f"{FAIR_QUEUE}.K{FairLanes(FairLaneStore(redis_client)).lane(FAIR_QUEUE, 'acme', LANES)}"
    pauses.pause(FAIR_QUEUE)  # the worker's delay-queue consumer still hands due messages back; none starts
    with WorkerProcess(processes=1, threads=2, queues=[FAIR_QUEUE], modules=["tests.support.fair_actors"]) as w:
        fair_tenant_job.send_with_options(kwargs={"tenant": "acme", "n": 1}, delay=300)
        assert ready(f"{FAIR_QUEUE}.DQ") + lane_counts().get(lane, 0) <= 1
        wait_for(lambda: lane_counts() == {lane: 1}, "the delayed job back in its lane")
        broker.flush(FAIR_QUEUE)
        pauses.resume(FAIR_QUEUE)
        # Fails once and pauses the queue as it does: its retry is published to the delay queue, then to its lane.
        wait_for(lambda: "queue fair-tenants resumed" in w.output(), "the worker to see the queue resumed")
        fair_tenant_job.send(tenant="acme", n=2, fail_first=1, pause_on_fail=True)
        wait_for(lambda: redis_client.get(f"test:fair:{FAIR_QUEUE}:attempts:2") == "1", "the first attempt to fail")
        wait_for(lambda: lane_counts() == {lane: 1}, "the retried job back in its lane")
        pauses.resume(FAIR_QUEUE)
        wait_for(lambda: [r.n for r in runs(FAIR_QUEUE)] == [2], "the retry to run from its lane")


@pytest.mark.slow
def test_two_worker_processes_run_every_job_of_many_keys_once() -> None:
    sent = []
    with WorkerProcess(processes=2, threads=4, queues=[FAIR_QUEUE], modules=["tests.support.fair_actors"]):
        for n in range(300):
            tenant = f"tenant-{n % 23}" if n % 10 else ""  # 23 keys over 8 lanes, and some jobs without a key
            fair_tenant_job.send(tenant=tenant, n=n, fail_first=1 if n % 37 == 0 else 0)
            sent.append(n)
        wait_for(lambda: len(runs(FAIR_QUEUE)) >= len(sent), "every job to run", timeout_s=90)
        time.sleep(0.5)  # a job run twice would show up now
    counted = Counter(run.n for run in runs(FAIR_QUEUE))
    assert sorted(counted) == sent
    assert set(counted.values()) == {1}
    assert not lane_counts()
    assert RabbitLink(broker).run(lambda link: link.message_count(f"{FAIR_QUEUE}.XQ")) == 0
