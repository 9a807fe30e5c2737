"""Every execution of a `tally` job, rebuilt from its start and end records, so "run twice" is a fact, not a guess.

A job ran twice when two of its executions both completed, or when their time spans overlapped. An execution ends
when it completes or is interrupted (both recorded with the time); one that recorded neither (its process was
killed) is taken to run on for ever, which is all the tally can say of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis

from tests.support.chaos_actors import tally_client, tally_key

#: What `tally` records as its job id when it runs with no job context: the worker's "before" hooks (which set
#: the context, check cancellation, limits and the lease) did not all run, so no job should ever run that way.
NO_CONTEXT = "unknown"


@dataclass(frozen=True)
class Execution:
    job_id: str
    pid: int
    started: float
    ended: float | None  #: None: the job body never recorded its end
    completed: bool = False  #: ended by running to the end, not by an interruption

    @property
    def until(self) -> float:
        return self.ended if self.ended is not None else math.inf

    def overlaps(self, other: Execution) -> bool:
        return self.started < other.until and other.started < self.until


def _entries(run: str, what: str, client: redis.Redis) -> list[tuple[str, int, float]]:
    entries = []
    for line in client.lrange(tally_key(run, what), 0, -1):
        job_id, pid, at = line.split()[:3]
        entries.append((job_id, int(pid), float(at)))
    return entries


def executions_of(run: str, client: redis.Redis = tally_client) -> dict[str, list[Execution]]:
    """Each end (completed or stopped) is matched to the latest earlier start of the same job in the same process.
    `client`: the tally's Redis, when the workers were given another one (TALLY_REDIS_URL)."""
    events = [(at, 0, job_id, pid) for job_id, pid, at in _entries(run, "starts", client)]
    events += [(at, 1, job_id, pid) for job_id, pid, at in _entries(run, "done", client)]
    events += [(at, 2, job_id, pid) for job_id, pid, at in _entries(run, "stopped", client)]
    open_runs: dict[tuple[str, int], list[float]] = {}
    found: dict[str, list[Execution]] = {}
    for at, kind, job_id, pid in sorted(events):
        if kind == 0:  # a start
            open_runs.setdefault((job_id, pid), []).append(at)
            continue
        starts = open_runs.get((job_id, pid))
        assert starts, f"job {job_id} recorded an end in process {pid} with no start before it"
        found.setdefault(job_id, []).append(Execution(job_id, pid, starts.pop(), at, completed=kind == 1))
    for (job_id, pid), starts in open_runs.items():
        found.setdefault(job_id, []).extend(Execution(job_id, pid, at, None) for at in starts)
    return found


def without_context(executions: dict[str, list[Execution]]) -> list[Execution]:
    """Executions of jobs that ran although the worker could not tell which job they were."""
    return executions.get(NO_CONTEXT, [])


def run_twice(executions: dict[str, list[Execution]]) -> dict[str, list[Execution]]:
    """The jobs with two completed executions or two that overlapped, with their executions."""
    twice = {}
    for job_id, runs in executions.items():
        if job_id == NO_CONTEXT:
            continue  # several jobs, not one: see without_context()
        completed = [r for r in runs if r.completed]
        overlapping = any(a.overlaps(b) for i, a in enumerate(runs) for b in runs[i + 1 :])
        if len(completed) > 1 or overlapping:
            twice[job_id] = sorted(runs, key=lambda r: r.started)
    return twice


def running_at(executions: dict[str, list[Execution]], at: float) -> int:
    """How many executions were under way at wall-clock time `at`."""
    return sum(1 for runs in executions.values() for r in runs if r.started <= at < r.until)


def describe(runs: list[Execution]) -> str:
    def end(r: Execution) -> str:
        if r.ended is None:
            return "never ended"
        return f"{r.ended:.3f}" + ("" if r.completed else " (interrupted)")

    return "; ".join(f"pid {r.pid} {r.started:.3f}->{end(r)}" for r in runs)
