"""What the per-key gauges (service/ops/key_metrics.py) cost a job's writes, and a scrape.

A redis-server of this test's own (nothing else talks to it, so `INFO commandstats` counts only what is measured).
Each job goes through what it goes through in a worker: recorded `queued` with its record (as the API enqueues it),
`active` with its lease, `completed` with its result, one transition script call each, from one thread (so no two
jobs share a script call and every count is exact). Four kinds side by side, rounds alternating:

  - unkeyed and keyed jobs, through the job store as it is;
  - the same through a store whose scripts have the per-key counting cut out (move_key in lua/common.lua returns at
    once): the baseline, so what the counting itself costs is told apart from what a key costs anyway (its index).

Keyed jobs take turns over 50 keys; each job ends before the next starts, so each key's count goes 0 -> 1 -> 0 and
its field is added and removed every time: the most a keyed job can cost (a key with jobs in flight is cheaper, no
HDEL). Prints, per job: Redis µs (the scripts' time, from commandstats) and Redis commands, and which commands the
counting adds. Asserts that a job with no key gets not one command more (the same HINCRBY and HDEL counts as the
baseline), and that a keyed job gets at most KEYED_EXTRA_COMMANDS more. Then the read a scrape makes, with 10,000
keys busy at once.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis
from redis.commands.core import Script

from service.domain.clock import iso_from_ms, now_ms
from service.domain.states import JobState
from service.ops.key_metrics import busiest
from service.store import keys, scripts
from service.store.job_store import JobStore, Retention
from tests.support.own_redis import OwnRedis

JOBS = int(os.environ.get("BENCH_KEY_METRIC_JOBS", "2000"))
ROUNDS = int(os.environ.get("BENCH_KEY_METRIC_ROUNDS", "3"))
KEYS = 50
BUSY_KEYS = 10_000
#: created +1 waiting; active -1 waiting (HDEL at 0), +1 running; completed -1 running (HDEL at 0)
KEYED_EXTRA_COMMANDS = 6
#: The counting's commands take at most this share of a keyed job's Redis time.
MAX_ADDED_SHARE = 0.10
#: Retention never prunes during the run: pruning comes in bursts, and would make the rounds' counts differ.
NO_PRUNING = Retention(completed_count=10_000_000, failed_count=10_000_000)
#: The line of lua/common.lua that the baseline replaces so the counting returns before doing anything.
_COUNTING = "    if not jkey then return end\n"


class UncountedStore(JobStore):
    """The job store with the per-key counting cut out of its scripts: the baseline."""

    def _script(self, name: str) -> Script:
        text = scripts.job_script(name, self.events_maxlen)
        assert _COUNTING in text, "move_key changed: update the baseline's cut"
        return self.client.register_script(text.replace(_COUNTING, "    do return end\n"))


@dataclass(frozen=True)
class Cost:
    usec: float  #: Redis µs per job: the script calls' time (it includes their commands')
    commands: float  #: Redis commands per job, the scripts' inner commands
    calls: dict[str, float]  #: the same, by command (hincrby, hdel, ...)
    usec_per_call: dict[str, float]  #: Redis µs one call of each command took, on average


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis().start()
    try:
        yield server
    finally:
        server.close()


def lifecycle(store: JobStore, key_of: Callable[[int], str | None]) -> Callable[[int], None]:
    def one(n: int) -> None:
        job_id = uuid.uuid4().hex
        created = now_ms()
        record = {"jobId": job_id, "actor": "bench_noop", "queue": "bench", "data": '{"n": 1}', "priority": "normal",
                  "createdMs": created, "createdAt": iso_from_ms(created)}  # fmt: skip
        key = key_of(n)
        if key is not None:
            record["key"] = key
        store.transition(job_id, JobState.QUEUED, create=record)
        active = store.transition(job_id, JobState.ACTIVE, lease=("bench:1", 30_000))
        assert active.applied
        store.transition(job_id, JobState.COMPLETED, fields={"result": "1", "progress": 100}, token=active.token)

    return one


def measured(client: redis.Redis, run_one: Callable[[int], None]) -> Cost:
    client.config_resetstat()
    for n in range(JOBS):
        run_one(n)
    stats = client.info("commandstats")
    inner = {k.removeprefix("cmdstat_"): v for k, v in stats.items() if k not in ("cmdstat_evalsha", "cmdstat_config")}
    return Cost(
        usec=stats["cmdstat_evalsha"]["usec"] / JOBS,
        commands=sum(v["calls"] for v in inner.values()) / JOBS,
        calls={name: v["calls"] / JOBS for name, v in inner.items()},
        usec_per_call={name: float(v["usec_per_call"]) for name, v in inner.items()},
    )


def least_disturbed(costs: list[Cost]) -> Cost:
    """The round Redis spent least time in: on a shared machine, the one other processes disturbed least. (Command
    counts are the same in every round.)"""
    return min(costs, key=lambda c: c.usec)


def interleaved(kinds: dict[str, Callable[[int], None]]) -> dict[str, float]:
    """The median time one job's three transitions take as a worker sees them, the kinds taking turns job by job: a
    load on the machine (other tests, other engineers' runs) falls on every kind alike."""
    times: dict[str, list[float]] = {name: [] for name in kinds}
    for n in range(JOBS):
        for name, run_one in kinds.items():
            started = time.perf_counter()
            run_one(n)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(spans) * 1e6 for name, spans in times.items()}


def added(cost: Cost, base: Cost) -> dict[str, float]:
    """The commands per job `cost` has more (or fewer) of than `base`."""
    diff = {n: cost.calls.get(n, 0) - base.calls.get(n, 0) for n in sorted(set(cost.calls) | set(base.calls))}
    return {n: round(d, 3) for n, d in diff.items() if abs(d) >= 0.001}


def test_what_counting_per_key_costs_a_keyed_job_and_that_an_unkeyed_one_pays_nothing(own_redis: OwnRedis) -> None:
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    counted, uncounted = JobStore(client, NO_PRUNING), UncountedStore(client, NO_PRUNING)
    kinds: dict[str, Callable[[int], None]] = {
        "unkeyed, counting": lifecycle(counted, lambda n: None),
        "unkeyed, baseline": lifecycle(uncounted, lambda n: None),
        "keyed, counting": lifecycle(counted, lambda n: f"tenant-{n % KEYS}"),
        "keyed, baseline": lifecycle(uncounted, lambda n: f"tenant-{n % KEYS}"),
    }
    for run_one in kinds.values():  # warm: scripts loaded, indexes and counters exist
        for n in range(200):
            run_one(n)
    rounds: dict[str, list[Cost]] = {name: [] for name in kinds}
    for i in range(ROUNDS):
        order = list(kinds) if i % 2 == 0 else list(reversed(kinds))  # alternating, so drift favours no side
        for name in order:
            rounds[name].append(measured(client, kinds[name]))
    cost = {name: least_disturbed(costs) for name, costs in rounds.items()}
    took = interleaved(kinds)

    keyed = cost["keyed, counting"]
    keyed_added = added(keyed, cost["keyed, baseline"])
    unkeyed_added = added(cost["unkeyed, counting"], cost["unkeyed, baseline"])
    # What the added commands themselves took in Redis (their calls' average time): the part of the keyed job's
    # Redis time that is the counting's, without the noise of the whole script's time on a shared machine.
    added_usec = sum(n * keyed.usec_per_call[name] for name, n in keyed_added.items())
    print(
        f"\nPer job (queued with its record, active, completed; one thread), {JOBS} jobs x {ROUNDS} rounds a kind:\n"
        "(Redis µs: the least disturbed round's; round trips: the median job's, the kinds' jobs interleaved)\n"
        "  kind               Redis µs  commands  3 round trips µs"
    )
    for name, c in cost.items():
        print(f"  {name:<18} {c.usec:8.1f}  {c.commands:8.2f}  {took[name]:8.1f}")
    print(
        f"  counting adds to an unkeyed job: {unkeyed_added or 'no command'}; "
        f"{took['unkeyed, counting'] - took['unkeyed, baseline']:+.1f} µs round trips\n"
        f"  counting adds to a keyed job:    {keyed_added}, which took {added_usec:.1f} µs in Redis "
        f"({100 * added_usec / keyed.usec:.1f} % of the job's); "
        f"{took['keyed, counting'] - took['keyed, baseline']:+.1f} µs round trips\n"
        f"  a keyed job against an unkeyed one, all told (its index too): "
        f"{keyed.commands - cost['unkeyed, counting'].commands:+.2f} commands, "
        f"{took['keyed, counting'] - took['unkeyed, counting']:+.1f} µs round trips"
    )

    # Nothing written for any key outlived its job: the hashes are gone when nothing waits or runs.
    assert client.exists(keys.KEY_WAITING, keys.KEY_RUNNING) == 0
    # No key, not one command more: the counting's own commands are as many as without it.
    for command in ("hincrby", "hdel"):
        assert cost["unkeyed, counting"].calls.get(command) == cost["unkeyed, baseline"].calls.get(command), command
    assert abs(cost["unkeyed, counting"].commands - cost["unkeyed, baseline"].commands) < 0.01, unkeyed_added
    # A keyed job: its HINCRBYs and HDELs, exactly as many as its three moves need, and a small part of its time.
    assert set(keyed_added) <= {"hincrby", "hdel"}, keyed_added
    assert sum(keyed_added.values()) == pytest.approx(KEYED_EXTRA_COMMANDS, abs=0.01), keyed_added
    assert added_usec <= MAX_ADDED_SHARE * keyed.usec, f"{added_usec:.1f} µs of {keyed.usec:.1f}"


def test_a_scrape_reads_ten_thousand_busy_keys_in_small_steps(own_redis: OwnRedis) -> None:
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    store = JobStore(client, NO_PRUNING)
    created = now_ms()
    jobs = [
        (uuid.uuid4().hex, JobState.QUEUED, {"jobId": f"j{n}", "actor": "bench_noop", "queue": "bench", "data": "{}",
                                             "createdMs": created, "createdAt": iso_from_ms(created), "key": f"t{n}"})
        for n in range(BUSY_KEYS)
    ]  # fmt: skip
    store.record_enqueued(jobs)
    assert client.hlen(keys.KEY_WAITING) == BUSY_KEYS
    client.config_resetstat()
    started = time.perf_counter()
    load = store.key_load()
    read = time.perf_counter()
    figures = busiest(load, 20)
    done = time.perf_counter()
    took = done - started
    scans = client.info("commandstats")["cmdstat_hscan"]
    print(
        f"\nA scrape with {BUSY_KEYS} keys busy: read in {(read - started) * 1000:.0f} ms ({scans['calls']} HSCAN "
        f"calls of {scans['usec_per_call']:.0f} µs each in Redis: the longest Redis is held), the top 20 and the rest "
        f"in {(done - read) * 1000:.0f} ms"
    )
    assert figures.keys_waiting == BUSY_KEYS and len(figures.rows) == 21
    assert scans["calls"] >= BUSY_KEYS // 1000  # in steps, never one long read
    assert took < 2.0, f"reading {BUSY_KEYS} busy keys took {took:.2f} s"
