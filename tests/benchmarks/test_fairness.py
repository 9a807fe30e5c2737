"""Fair dispatch against plain FIFO, side by side in one run: key A sends 5,000 jobs of 20 ms, then key B sends 50.
On the fair queue (FAIR_QUEUES=fair-*) B's jobs take turns with A's backlog; on the plain queue they wait behind it.
The target: on the fair queue B's 50 are all done before a fifth of A's backlog is. B's p95 wait (from its send to
its start) is printed for both. One worker command (2 processes x 5 threads) consumes both queues; rounds alternate
which side goes first. The queue is paused while A and B send (service/ops/queues.py), so A's backlog is whole when B's
jobs are sent: sending 5,000 jobs takes seconds, and a worker would otherwise be well into A before B exists."""

from __future__ import annotations

import statistics
import time

from service.bootstrap import broker, services, store
from service.ops.jobs import Jobs
from service.worker.typed_actor import TypedActor
from tests.benchmarks.fair_runs import forget_runs, p95, send, wait_runs
from tests.support.fair_actors import FAIR_QUEUE, PLAIN_QUEUE, fair_tenant_job, plain_tenant_job, runs
from tests.support.workers import WorkerProcess

BACKLOG = 5000
SMALL = 50
JOB_MS = 20
ROUNDS = 2
#: Workers read the pause flags twice a second.
PAUSE_SEEN_S = 1.0
SIDES: dict[str, tuple[str, TypedActor]] = {
    "fair": (FAIR_QUEUE, fair_tenant_job),
    "fifo": (PLAIN_QUEUE, plain_tenant_job),
}


def one_side(jobs: Jobs, queue: str, actor: TypedActor) -> tuple[int, float, float, int]:
    """A's jobs done when B's last one finished, B's median and p95 wait (s), A's jobs done when B was sent."""
    forget_runs(queue)
    queues = services().queues
    queues.pause(queue)
    time.sleep(PAUSE_SEEN_S)
    send(jobs, actor, "A", BACKLOG, JOB_MS)
    b_sent = time.time()
    send(jobs, actor, "B", SMALL, JOB_MS)
    queues.resume(queue)
    finished = wait_runs(queue, SMALL, timeout_s=300, tenant="B")
    b_runs = [run for run in finished if run.tenant == "B"]
    last_b = max(run.finished_at for run in b_runs)
    a_done = sum(1 for run in finished if run.tenant == "A" and run.finished_at <= last_b)
    a_before = sum(1 for run in finished if run.tenant == "A" and run.finished_at <= b_sent)
    waits = [run.wait_s for run in b_runs]
    broker.flush(queue)  # the rest of A's backlog is not needed
    time.sleep(1.0)  # the jobs in hand finish
    forget_runs(queue)
    return a_done, statistics.median(waits), p95(waits), a_before


def test_a_backlog_of_one_key_does_not_hold_another_key_on_a_fair_queue_as_it_does_in_fifo_order() -> None:
    jobs = Jobs(broker, store)
    for queue, _ in SIDES.values():
        broker.declare_queue(queue, ensure=True)
        broker.flush(queue)
    figures: dict[str, list[tuple[int, float, float, int]]] = {side: [] for side in SIDES}
    command = WorkerProcess(
        processes=2, threads=5, queues=[FAIR_QUEUE, PLAIN_QUEUE], modules=["tests.support.fair_actors"]
    )
    with command:
        for round_ in range(ROUNDS):
            order = list(SIDES) if round_ % 2 == 0 else list(reversed(SIDES))
            for side in order:
                figures[side].append(one_side(jobs, *SIDES[side]))
    assert not runs(FAIR_QUEUE)
    print(f"\nfairness: key A sends {BACKLOG} jobs of {JOB_MS} ms, then key B {SMALL}; 2 processes x 5 threads")
    for side, rows in figures.items():
        for a_done, median, worst, a_before in rows:
            print(f"  {side:4s}: B's {SMALL} done when A had {a_done:4d} of {BACKLOG} done; "
                  f"B wait median {median:.2f} s, p95 {worst:.2f} s ({a_before} of A done as B sent)")  # fmt: skip
    fair_p95 = statistics.median(row[2] for row in figures["fair"])
    fifo_p95 = statistics.median(row[2] for row in figures["fifo"])
    print(f"  B's p95 wait: fair {fair_p95:.2f} s against FIFO {fifo_p95:.2f} s ({fifo_p95 / fair_p95:.0f}x shorter)")
    for a_done, _, _, _ in figures["fair"]:
        assert a_done < BACKLOG / 5, f"fair: B's jobs done only when A had {a_done} of {BACKLOG} done"
    assert fair_p95 * 5 < fifo_p95
