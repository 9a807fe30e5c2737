"""What a large dead-letter queue costs: reading a page at its head and deep in it, and a "requeue all" of 10,000
(DEAD_BENCH_COUNT), with the count of jobs back in their queue afterwards (none may be missing)."""

from __future__ import annotations

import os
import time

from service.bootstrap import services
from tests.support.api_actors import QUEUE
from tests.support.graveyard import bury, dead_ids, empty, read_queue

COUNT = int(os.environ.get("DEAD_BENCH_COUNT", "10000"))


def test_a_requeue_of_ten_thousand_dead_letters_and_its_pages() -> None:
    empty(QUEUE)
    dead = services().queues.dead
    ids = bury("held", [{"key": f"bench-{i}"} for i in range(COUNT)])
    started = time.perf_counter()
    head = dead.page(QUEUE, 0, 50)
    head_s = time.perf_counter() - started
    started = time.perf_counter()
    deep = dead.page(QUEUE, COUNT - 50, 50)
    deep_s = time.perf_counter() - started
    assert [item.job_id for item in head.items] == ids[:50]
    assert [item.job_id for item in deep.items] == ids[-50:]
    seen: list[int] = []
    started = time.perf_counter()
    progress = dead.requeue_all(QUEUE, shown=lambda p: seen.append(p.handled))
    requeue_s = time.perf_counter() - started
    assert (progress.state.value, progress.requeued) == ("done", COUNT)
    assert dead_ids(QUEUE) == []
    assert sorted(letter.job_id for letter in read_queue(QUEUE)) == sorted(ids)
    print(
        f"\ndead letters: {COUNT}; page of 50 at the head {head_s * 1000:.0f} ms, at offset {COUNT - 50} "
        f"{deep_s * 1000:.0f} ms; requeue all {requeue_s:.1f} s ({COUNT / requeue_s:.0f}/s, "
        f"{len(seen)} progress writes)"
    )
    empty(QUEUE)
