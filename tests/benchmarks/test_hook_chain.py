"""What a worker's bookkeeping of its jobs in hand costs per message, in the hook chain (hook_chain.py).

Graceful stop, the time limit, the lease and the heartbeat used to keep a registry each (a lock and a dict write at
every start and end, an ISO timestamp, an Event set): 36-41 us of CPU per message in this test on the shared 2-core
machine, where the one shared registry (service/worker/middleware/in_hand.py) and what is left of theirs take 15-19 us.
Each row includes about 1 us of the timing itself.
"""

from __future__ import annotations

import statistics

from tests.benchmarks.hook_chain import chain_cpu_us, per_middleware_us

#: The middlewares whose per-message work is keeping or reading the jobs in hand.
BOOKKEEPING = ("JobsInHand", "GracefulStop", "JobTimeLimit", "JobLease", "Heartbeat")
TARGET_US = 25.0
MESSAGES = 2000


def test_the_bookkeeping_of_jobs_in_hand_costs_under_25_us_of_cpu_a_message() -> None:
    chain_cpu_us(300)  # warm-up: connections, script loading
    passes = [per_middleware_us(MESSAGES) for _ in range(3)]
    rows = {name: statistics.median(p[name] for p in passes) for name in BOOKKEEPING}  # KeyError if one is gone
    whole = statistics.median(p["(whole chain, timed)"] for p in passes)
    bookkeeping = sum(rows.values())
    print(f"\nhook chain: {whole:.1f} us of CPU per message; jobs-in-hand bookkeeping {bookkeeping:.1f} us:")
    for name, us in rows.items():
        print(f"  {name:14s} {us:5.1f} us")
    assert bookkeeping < TARGET_US
