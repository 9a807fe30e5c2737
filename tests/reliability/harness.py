"""What every fault scenario shares: proxied settings, worker fleets, the execution tally and the report rows."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from service.domain.states import FINAL_STATES, JobState
from service.ops.jobs import Jobs
from service.settings import Settings
from service.store.job_store import JobStore
from tests.support.chaos_actors import tally_client, tally_key
from tests.support.fault_reports import REPORTS as REPORTS
from tests.support.fault_reports import FaultReport as FaultReport
from tests.support.proxy import FaultProxy
from tests.support.workers import WorkerProcess

CHAOS_MODULES = ["tests.support.chaos_actors"]


def scale(default: int) -> int:
    """Job counts in `make test` are small; RELIABILITY_SCALE=5 (as `make bench` does) runs the issue's full counts."""
    return int(default * float(os.environ.get("RELIABILITY_SCALE", "1")))


def through(url: str, proxy: FaultProxy, **query: str) -> str:
    """The same URL, with its host and port replaced by the proxy's; extra query parameters appended."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    new_netloc = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
    extra = "&".join(f"{k}={v}" for k, v in query.items())
    joined = "&".join(q for q in (parts.query, extra) if q)
    return urlunsplit((parts.scheme, new_netloc, parts.path, joined, parts.fragment))


def worker_env(
    *, rabbit: FaultProxy | None = None, redis: FaultProxy | None = None, heartbeat: int | None = None
) -> dict[str, str]:
    """Environment for a worker whose broker and/or store connections run through fault proxies."""
    # Retention would prune completed records (1000 per actor by default) before the checks could read them.
    env = {"TALLY_REDIS_URL": os.environ["REDIS_URL"], "JOB_RETENTION_COMPLETED_COUNT": "1000000"}
    if rabbit is not None:
        query = {"heartbeat": str(heartbeat)} if heartbeat else {}
        env["RABBITMQ_URL"] = through(os.environ["RABBITMQ_URL"], rabbit, **query)
    if redis is not None:
        env["REDIS_URL"] = through(os.environ["REDIS_URL"], redis)
    return env


class Fleet:
    """Worker processes (one dramatiq process each) that can be killed and are restarted like a supervisor would."""

    def __init__(self, size: int, *, threads: int = 4, env: dict[str, str] | None = None) -> None:
        self.size = size
        self.threads = threads
        self.env = env or worker_env()
        self.workers: list[WorkerProcess] = []
        self.retired: list[WorkerProcess] = []
        self.killed_pids: list[int] = []
        #: pid -> when (time.time(), the clock the tally's timestamps use) it was sent SIGKILL.
        self.killed_at: dict[int, float] = {}

    def _new(self) -> WorkerProcess:
        return WorkerProcess(
            processes=1, threads=self.threads, queues=["chaos"], env=self.env, modules=CHAOS_MODULES
        ).start(timeout=60)

    def start(self) -> Fleet:
        self.workers = [self._new() for _ in range(self.size)]
        return self

    def kill_one(self, index: int) -> int:
        """SIGKILL the process that runs jobs in worker `index`; returns its pid."""
        worker = self.workers[index]
        pids = worker.child_pids()
        assert pids, f"worker {index} has no child process to kill"
        killed_at = time.time()
        os.kill(pids[0], signal.SIGKILL)
        self.killed_pids.append(pids[0])
        self.killed_at[pids[0]] = killed_at
        return pids[0]

    def restart_dead(self, wait: float = 30.0) -> int:
        """Replace every worker whose supervisor exited (Dramatiq stops when a process of it dies)."""
        restarted = 0
        for i, worker in enumerate(self.workers):
            if worker.proc is not None and worker.proc.poll() is None:
                continue
            self.retired.append(worker)
            self.workers[i] = self._new()
            restarted += 1
        return restarted

    def wait_for_exit(self, index: int, timeout: float = 15.0) -> None:
        proc = self.workers[index].proc
        assert proc is not None
        proc.wait(timeout)

    def logs(self) -> str:
        return "\n".join(w.output() for w in self.retired + self.workers)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=20)

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Execution:
    """One real execution of a `tally` job: when its body started and, if it ran to the end, when it ended."""

    job_id: str
    pid: int
    started: float
    token: str
    finished: float | None = None
    stopped: float | None = None  #: when an interruption (time limit, lost lease, stop) ended it mid-job


@dataclass
class Tally:
    """Real executions of `tally` jobs, read from the tally Redis: who started and who finished each job, and when."""

    starts: Counter[str]
    done: Counter[str]
    done_pids: dict[str, list[int]]
    executions: dict[str, list[Execution]] = field(default_factory=dict)

    @classmethod
    def read(cls, run: str) -> Tally:
        starts: Counter[str] = Counter()
        done: Counter[str] = Counter()
        pids: dict[str, list[int]] = {}
        finished: dict[str, float] = {}
        for entry in tally_client.lrange(tally_key(run, "done"), 0, -1):
            job_id, pid, at, token = entry.split()
            done[job_id] += 1
            pids.setdefault(job_id, []).append(int(pid))
            finished[token] = float(at)
        stopped = {
            entry.split()[3]: float(entry.split()[2]) for entry in tally_client.lrange(tally_key(run, "stopped"), 0, -1)
        }
        executions: dict[str, list[Execution]] = {}
        for entry in tally_client.lrange(tally_key(run, "starts"), 0, -1):
            job_id, pid, at, token = entry.split()
            starts[job_id] += 1
            execution = Execution(job_id, int(pid), float(at), token, finished.get(token), stopped.get(token))
            executions.setdefault(job_id, []).append(execution)
        for runs in executions.values():
            runs.sort(key=lambda e: e.started)
        return cls(starts, done, pids, executions)

    def twice(self) -> list[str]:
        return [job_id for job_id, n in self.done.items() if n > 1]

    def ran_twice(self, killed_at: dict[int, float]) -> list[tuple[Execution, Execution]]:
        """Pairs of executions of one job where the later one ran although the earlier one was still running or had
        finished with its completion recorded. A second execution is legitimate only when the earlier one's process
        was SIGKILLed after that execution started and before the later one started: before it ended (a job taken
        over), or after its body ended but before its completion was recorded (at-least-once delivery); or when the
        earlier one was interrupted (its lease lost, its worker stopping) before the later one started."""
        pairs = []
        for runs in self.executions.values():
            for earlier, later in itertools.pairwise(runs):
                if earlier.stopped is not None and earlier.stopped <= later.started:
                    continue
                killed = killed_at.get(earlier.pid)
                if killed is None or not earlier.started <= killed <= later.started:
                    pairs.append((earlier, later))
        return pairs

    def in_flight(self, at: float) -> list[Execution]:
        """Executions that had started and not ended at `at` (time.time()): the jobs a fault at that moment hit."""
        return [
            e
            for runs in self.executions.values()
            for e in runs
            if e.started <= at and (e.finished is None or e.finished > at)
        ]

    def interrupted(self, killed_at: dict[int, float]) -> list[Execution]:
        """Executions stopped mid-job by a SIGKILL of their process: started, never ended, process killed after."""
        return [
            e
            for runs in self.executions.values()
            for e in runs
            if e.finished is None and killed_at.get(e.pid, 0.0) >= e.started
        ]

    @staticmethod
    def clear(run: str) -> None:
        tally_client.delete(tally_key(run, "starts"), tally_key(run, "done"), tally_key(run, "stopped"))


def states_of(store: JobStore, ids: list[str]) -> dict[str, str | None]:
    pipe = store.client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(f"jobs:job:{job_id}", "state")
    return dict(zip(ids, pipe.execute(), strict=True))


def wait_until_final(store: JobStore, ids: list[str], timeout: float) -> tuple[dict[str, str | None], float]:
    """Poll until every job is final or the time is up; returns the last states seen and the seconds taken."""
    started = time.monotonic()
    final = {s.value for s in FINAL_STATES}
    pending = list(ids)
    states: dict[str, str | None] = {}
    while True:
        fresh = states_of(store, pending)
        states.update(fresh)
        pending = [job_id for job_id, state in fresh.items() if state not in final]
        if not pending or time.monotonic() - started > timeout:
            return states, time.monotonic() - started
        time.sleep(0.25)


def wait_for(condition: Callable[[], bool], timeout: float, poll: float = 0.1) -> float | None:
    """Seconds until `condition()` held, or None if it never did within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):
            if condition():
                return time.monotonic() - started
        time.sleep(poll)
    return None


def summarise(states: dict[str, str | None]) -> Counter[str]:
    return Counter(state or "missing" for state in states.values())


@contextlib.contextmanager
def proxies(*targets: int) -> Iterator[list[FaultProxy]]:
    started = [FaultProxy(port, name=f"proxy-{port}").start() for port in targets]
    try:
        yield started
    finally:
        for proxy in started:
            proxy.stop()


def active_records(store: JobStore) -> int:
    return store.count(state=JobState.ACTIVE)


def jobs_through(rabbit_url: str, redis_url: str, **overrides: object) -> Jobs:
    """A service layer of its own (as the API process has) whose connections run where the URLs point; `overrides`
    replace other settings (a list of nodes is given as Dramatiq reads it, joined by ";")."""
    from service.settings import get_settings

    update = {"rabbitmq_url": rabbit_url, "redis_url": redis_url, **overrides}
    return jobs_using(get_settings().model_copy(update=update))


def jobs_using(settings: Settings) -> Jobs:
    """A service layer of its own, built from `settings` as an API process builds its own (Redis alone or through
    Sentinel, as they say)."""
    import dramatiq

    from service.bootstrap import build_broker, build_store
    from service.store.connection import redis_for
    from service.store.pauses import PauseFlags

    client = redis_for(settings)
    store = build_store(settings, client)
    own = build_broker(settings, client, store, PauseFlags(client))
    for name in dramatiq.get_broker().get_declared_actors():
        own.declare_actor(dramatiq.get_broker().get_actor(name))
    return Jobs(own, store)
