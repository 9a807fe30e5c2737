"""A "requeue all" of a large dead-letter queue loses nothing when its web process is killed halfway: each dead
letter leaves its queue only once its copy is confirmed, and a copy sent twice is skipped by the worker by job id."""

from __future__ import annotations

import collections
import os
import signal
import time

import httpx
import pytest

from service.bootstrap import redis_client, services
from service.domain.states import JobState
from service.ops.dead_jobs import RequeueState
from service.ops.jobs import Jobs
from service.store import keys
from tests.support.api_actors import QUEUE, held_worker
from tests.support.cli import run_cli
from tests.support.graveyard import bury, bury_raw, dead_ids, empty, keep_only, read_queue
from tests.support.web import WebProcess

#: Large enough that the kill lands well inside the run (10,000 in tests/benchmarks/test_dead_letter_requeue.py).
COUNT = int(os.environ.get("DEAD_REQUEUE_COUNT", "2000"))


@pytest.mark.slow  # 25-45 s: 2,000 dead letters made, a third requeued before the kill, the rest by the CLI
def test_a_requeue_of_all_killed_halfway_loses_no_job_and_runs_none_twice(
    capsys: pytest.CaptureFixture[str], jobs: Jobs
) -> None:
    empty(QUEUE)
    ids = bury("held", [{"key": "kill"} for _ in range(COUNT)])
    web = WebProcess().start()
    try:
        assert httpx.post(f"{web.url}/queues/{QUEUE}/dead/requeue", timeout=10).status_code == 202
        deadline = time.monotonic() + 60
        while True:
            progress = httpx.get(f"{web.url}/queues/{QUEUE}/dead/requeue", timeout=5).json()
            assert progress["state"] == "running", progress  # it must not finish before the kill
            if progress["requeued"] >= COUNT // 3:
                break
            assert time.monotonic() < deadline, progress
            time.sleep(0.02)
        assert web.proc is not None
        os.killpg(web.proc.pid, signal.SIGKILL)
        web.proc.wait(10)
    finally:
        web.stop()

    interrupted = services().queues.dead.progress(QUEUE)
    assert interrupted is not None and interrupted.state is RequeueState.INTERRUPTED, interrupted

    # Halfway: some jobs are back in their queue, the others still dead; none is in neither.
    waiting = [letter.job_id for letter in read_queue(QUEUE)]
    dead = dead_ids(QUEUE)
    assert 0 < len(set(waiting)) < COUNT and len(dead) > 0, (len(waiting), len(dead))
    assert set(waiting) | set(dead) == set(ids), f"lost: {len(set(ids) - set(waiting) - set(dead))}"
    assert all(jobs.get(job_id).state is JobState.QUEUED for job_id in waiting)
    both = set(waiting) & set(dead)  # copy confirmed, the kill came before the dead letter's ack reached RabbitMQ

    # Lost acks, for certain: two jobs already back in their queue are dead once more. For the first, the mark
    # written after its confirm tells the next requeue its copy went out; for the second, the kill also came before
    # the mark, so its copy is sent again and the worker must skip one of the two by job id.
    marked, unmarked = waiting[0], waiting[1]
    for job_id in (marked, unmarked):
        bury_raw(QUEUE, next(letter for letter in read_queue(QUEUE) if letter.job_id == job_id).raw)
    redis_client.delete(keys.dead_sent(unmarked))

    done = run_cli(capsys, "requeue-dead", QUEUE, "--json")
    assert done.code == 0, done.err
    assert f"requeue {QUEUE}: " in done.err  # progress lines on stderr, written every 0.5 s
    assert dead_ids(QUEUE) == []
    sent = collections.Counter(letter.job_id for letter in read_queue(QUEUE))
    assert set(sent) == set(ids)
    assert (sent[marked], sent[unmarked]) == (1, 2)
    twice = {job_id for job_id, n in sent.items() if n > 1}
    assert len(twice - {unmarked}) <= 1, twice  # at most the one the kill caught between its confirm and its mark

    # The worker runs the job once and skips the second copy by its id (the other jobs are taken out first, so the
    # worker reaches both copies within seconds).
    keep_only(QUEUE, {unmarked})
    with held_worker(threads=1) as worker:  # one thread: the second copy comes after the first has finished
        deadline = time.monotonic() + 30
        while f"skipping {unmarked}" not in worker.output():
            assert time.monotonic() < deadline, worker.output()[-3000:]
            time.sleep(0.1)
    assert redis_client.lrange("test:order:kill", 0, -1) == [unmarked]
    assert jobs.get(unmarked).state is JobState.COMPLETED
    print(f"killed with {len(set(waiting))} of {COUNT} back; {len(both)} both back and dead")
