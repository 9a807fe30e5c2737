"""Workers on three hosts, one host cut off from the network mid-job (issue 15's third fault): what the small test
(tests/reliability/test_worker_hosts.py) and the full count (tests/benchmarks/test_worker_hosts_full.py) share.

The hosts are network namespaces (tests/support/netns_hosts.py), each running one worker process; RabbitMQ and Redis
are servers of the test's own, listening on 127.0.0.1 and on the hosts' network address. Jobs come in through the
API (the real app, in the test process) and from `actor.send()` (a process of its own: tests/reliability/senders.py);
both run in the root namespace, which a cut never touches.

The jobs are `tally` jobs (tests/support/chaos_actors.py): each execution notes its start and its end (completed, the
job's one side effect, or stopped by an interruption) with its process id, which names the host. Those notes go to the
test's Redis through a Unix socket: a cut host has no network at all, yet its notes arrive at once and with their own
times, so the test can tell whether two executions of one job ever ran alongside.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import redis

from service.ops.jobs import Jobs
from service.store import keys
from tests.reliability.executions import Execution, describe, executions_of
from tests.reliability.harness import CHAOS_MODULES, jobs_through, wait_for, wait_until_final, worker_env
from tests.reliability.senders import ApiSender, SenderProcess
from tests.support.chaos_actors import QUEUE, tally_key
from tests.support.fault_reports import FaultReport
from tests.support.netns_hosts import Host, NetnsHosts
from tests.support.own_rabbit import OwnRabbit
from tests.support.own_redis import OwnRedis
from tests.support.own_servers import ServerDidNotStart, fail_or_skip, started
from tests.support.workers import WorkerProcess

#: Short, so a cut host's jobs are taken over within seconds (30 s by default).
LEASE_MS = 3000
#: A worker interrupts a job whose lease it could not extend for this long (service/worker/middleware/lease.py).
FENCE_S = LEASE_MS * 5 / 6 / 1000
#: RabbitMQ's heartbeat, asked for in the workers' RABBITMQ_URL: the node drops a silent connection (and hands its
#: unacknowledged messages to the other hosts) after 2.5-3 of them; the worker gives its own up after heartbeat + 5 s
#: to twice that (pika). With the default 30 s a takeover would take 90 s.
HEARTBEAT_S = 2
#: A job counts as "held mid-run at the cut" when it would still run this long after the fence.
MARGIN_S = 0.5


@dataclass
class Servers:
    """The hosts' network, and RabbitMQ and Redis listening on 127.0.0.1 and on the network's address."""

    network: NetnsHosts
    rabbit: OwnRabbit
    redis: OwnRedis
    socket: Path  #: the same Redis on a Unix socket, which no cut touches: the tally's way in

    @property
    def tally(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), decode_responses=True)

    def worker_env(self) -> dict[str, str]:
        """A worker in a host: every server by the network's address; the tally by the socket."""
        address = self.network.address
        return {
            **worker_env(),
            "RABBITMQ_URL": f"{self.rabbit.url_at(address)}?heartbeat={HEARTBEAT_S}",
            "REDIS_URL": f"redis://{address}:{self.redis.port}/0",
            "TALLY_REDIS_URL": f"unix://{self.socket}?db=0",
            "JOB_LEASE_MS": str(LEASE_MS),
        }

    def root_env(self) -> dict[str, str]:
        """A process in the root namespace (the actor.send() sender): the servers on 127.0.0.1."""
        return {**self.worker_env(), "RABBITMQ_URL": self.rabbit.url, "REDIS_URL": self.redis.url}


@contextlib.contextmanager
def hosts_and_servers(count: int = 3) -> Iterator[Servers]:
    """`count` hosts, a RabbitMQ node and a Redis of the test's own; a failure to make them fails the test under CI
    (skips it elsewhere) with the reason."""
    try:
        network = NetnsHosts(count)
    except ServerDidNotStart as error:
        fail_or_skip(error)
    with network, contextlib.ExitStack() as stack:
        rabbit = stack.enter_context(started(OwnRabbit(also_listen=network.address)))
        server = OwnRedis(also_listen=network.address)
        socket = server.folder / "redis.sock"
        server.args += ["--unixsocket", str(socket), "--unixsocketperm", "700"]
        stack.enter_context(started(server))
        yield Servers(network, rabbit, server, socket)


def host_worker(servers: Servers, host: Host, *, threads: int) -> WorkerProcess:
    return WorkerProcess(
        host=host, processes=1, threads=threads, queues=[QUEUE], env=servers.worker_env(), modules=CHAOS_MODULES
    )


@dataclass
class Cut:
    """One cut and heal of one host, and what it did to the jobs it held."""

    host: int
    pid: int  #: the host's worker process (the one that runs jobs)
    holder: str  #: how the job leases name that process
    at: float  #: time.time() of the cut
    held: list[str]  #: jobs running mid-run on the host at the cut, each `active` under a lease `holder` holds
    healed_at: float = 0.0
    #: per held job: seconds from the cut until another host started it again
    taken_over_s: dict[str, float] = field(default_factory=dict)
    #: per held job: seconds from the cut until its execution on the cut host stopped
    stopped_s: dict[str, float] = field(default_factory=dict)
    rejoined_s: float | None = None  #: from the heal until the host's worker started a job again
    completed_after_heal: int = 0  #: jobs the host's worker started after the heal and completed

    def describe(self) -> str:
        return (
            f"host {self.host} cut for {self.healed_at - self.at:.0f} s holding {len(self.held)} jobs mid-run: "
            f"stopped after {spread(list(self.stopped_s.values()))}, taken over after "
            f"{spread(list(self.taken_over_s.values()))}; rejoined {spread([self.rejoined_s or 0.0])} after the heal"
        )


@dataclass
class Outcome:
    """What a run of cuts measured, with its checks."""

    sent: int
    states: Counter[str]
    lost: list[str]
    #: jobs two of whose executions overlapped in time
    alongside: dict[str, list[Execution]]
    #: jobs whose side effect happened twice although no cut explains it
    twice: dict[str, list[Execution]]
    #: jobs run again after their side effect happened on a host cut before the outcome was recorded (at least once)
    again_after_cut: dict[str, list[Execution]]
    #: jobs whose record's history says `completed` more than once
    completed_twice: list[str]
    cuts: list[Cut]
    notes: list[str]

    def report(self, fault: str) -> FaultReport:
        takeovers = [s for cut in self.cuts for s in cut.taken_over_s.values()]
        rejoins = [cut.rejoined_s for cut in self.cuts if cut.rejoined_s is not None]
        recovery = max([*takeovers, *rejoins]) if takeovers and len(rejoins) == len(self.cuts) else None
        return FaultReport(
            fault,
            "held jobs taken over after the lease, never alongside, completed once; the host's worker rejoins",
            sent=self.sent,
            completed=self.states["completed"],
            lost=len(self.lost),
            run_twice=len(self.alongside) + len(self.twice),
            recovery_s=recovery,
            notes=[self.summary(), *self.notes],
        )

    def summary(self) -> str:
        takeovers = [s for cut in self.cuts for s in cut.taken_over_s.values()]
        stops = [s for cut in self.cuts for s in cut.stopped_s.values()]
        rejoins = [cut.rejoined_s for cut in self.cuts if cut.rejoined_s is not None]
        return (
            f"{len(self.cuts)} cut(s), {sum(len(c.held) for c in self.cuts)} jobs held mid-run; held jobs stopped "
            f"{spread(stops)} after the cut, taken over {spread(takeovers)} after it; worker rejoined {spread(rejoins)}"
            f" after the heal, then completed {sum(c.completed_after_heal for c in self.cuts)} jobs; "
            f"run again after an unrecorded finish: {len(self.again_after_cut)}"
        )

    def check(self) -> None:
        for cut in self.cuts:
            # The situation was reached: the host held jobs mid-run, each taken over by another host.
            assert cut.held, f"host {cut.host} held no job at the cut"
            assert set(cut.taken_over_s) == set(cut.held), f"not taken over: {set(cut.held) - set(cut.taken_over_s)}"
            assert set(cut.stopped_s) == set(cut.held), f"not stopped on the cut host: {cut}"
            # Stopped by the worker itself, before its lease could lapse in Redis.
            assert max(cut.stopped_s.values()) < LEASE_MS / 1000, cut.stopped_s
            assert cut.rejoined_s is not None, f"host {cut.host}'s worker never ran a job after the heal"
            assert cut.completed_after_heal > 0, f"host {cut.host}'s worker completed nothing after the heal"
        assert not self.lost, "\n".join(self.lost[:20] + self.notes)
        assert not self.alongside, "ran alongside:\n" + "\n".join(
            f"{job_id}: {describe(runs)}" for job_id, runs in list(self.alongside.items())[:10]
        )
        assert not self.twice, "side effect twice:\n" + "\n".join(
            f"{job_id}: {describe(runs)}" for job_id, runs in list(self.twice.items())[:10]
        )
        assert not self.completed_twice, f"completed twice in the record: {self.completed_twice[:10]}"


def spread(values: list[float]) -> str:
    if not values:
        return "never"
    if len(values) == 1:
        return f"{values[0]:.1f} s"
    return f"{min(values):.1f}-{max(values):.1f} s (median {statistics.median(values):.1f})"


class HostCuts:
    """Three hosts with a worker each and jobs flowing in; `cut_and_heal` cuts one host off while it holds jobs
    mid-run, waits for those jobs to be taken over, heals it and waits for its worker to run jobs again."""

    def __init__(
        self,
        servers: Servers,
        *,
        threads: int,
        ms: int,
        api_per_second: float,
        api_burst: int = 1,
        long_every: int = 0,
        long_ms: int = 0,
        sender_pause_s: float,
        sender_ms: int | None = None,
    ) -> None:
        """`threads` per worker; the API sends `api_burst` jobs at a time, `api_per_second` on average, of `ms` (every
        `long_every`-th of `long_ms`); actor.send() one job of `sender_ms` (else `ms`) every `sender_pause_s`."""
        self.servers = servers
        self.run = uuid.uuid4().hex[:8]
        self.tally = servers.tally
        self.jobs = jobs_through(servers.rabbit.url, servers.redis.url)
        self.workers = [host_worker(servers, host, threads=threads) for host in servers.network.hosts]
        self.api = ApiSender(
            self.jobs, self.run, ms=ms, per_second=api_per_second, burst=api_burst, long_every=long_every,
            long_ms=long_ms
        )  # fmt: skip
        self.sender_ms = sender_ms if sender_ms is not None else ms
        self.sender_pause_s = sender_pause_s
        self.sender: SenderProcess | None = None
        self.cuts: list[Cut] = []

    def __enter__(self) -> HostCuts:
        try:
            with ThreadPoolExecutor(len(self.workers)) as starting:  # side by side: each takes seconds to import
                list(starting.map(lambda worker: worker.start(timeout=60), self.workers))
            self.api.start()
            env = self.servers.root_env()
            self.sender = SenderProcess(self.run, env, ms=self.sender_ms, pause_s=self.sender_pause_s)
        except BaseException:
            self._stop_all()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_all()

    def _stop_all(self) -> None:
        for host in self.servers.network.hosts:
            if host.is_cut():
                host.heal()
        with contextlib.suppress(AssertionError):
            self.api.stop()
        if self.sender is not None:
            with contextlib.suppress(AssertionError):
                self.sender.stop()
        with ThreadPoolExecutor(len(self.workers)) as stopping:  # each finishes the jobs in hand: side by side
            list(stopping.map(lambda worker: worker.stop(timeout=30), self.workers))
        self.tally.close()

    # -- reading the tally ------------------------------------------------------------------------------------

    def executions(self) -> dict[str, list[Execution]]:
        return executions_of(self.run, self.tally)

    def pid_of(self, index: int) -> int:
        pids = self.workers[index].child_pids()
        assert len(pids) == 1, f"host {index}'s worker has processes {pids}"
        return pids[0]

    def ms_of(self, job_id: str) -> int:
        return self.api.ms_of.get(job_id, self.sender_ms)

    def done_count(self) -> int:
        return int(self.tally.llen(tally_key(self.run, "done")))

    def held_mid_run(self, pid: int) -> list[Execution]:
        """The executions running in `pid` now that will still run when the fence stops them, should it be cut now.
        (The others finish while it is cut, before their outcome can be recorded: they run again elsewhere.)"""
        now = time.time()
        running = [e for runs in self.executions().values() for e in runs if e.pid == pid and e.ended is None]
        return [e for e in running if e.started + self.ms_of(e.job_id) / 1000 > now + FENCE_S + MARGIN_S]

    # -- the fault --------------------------------------------------------------------------------------------

    def warm_up(self, done: int, timeout: float = 60) -> None:
        """Every host has completed a job and `done` have completed in all."""

        def warm() -> bool:
            pids = {self.pid_of(i) for i in range(len(self.workers))}
            by = {e.pid for runs in self.executions().values() for e in runs if e.completed}
            return pids <= by and self.done_count() >= done

        assert wait_for(warm, timeout=timeout, poll=0.2) is not None, f"not every host ran jobs: {self.logs()[-3000:]}"

    def cut_and_heal(self, index: int, *, min_held: int = 1, stay_cut_s: float = 0.0, ripe_timeout: float = 60) -> Cut:
        """Cut host `index` once it holds at least `min_held` jobs mid-run; heal it once they were all taken over
        and `stay_cut_s` passed; wait until its worker runs jobs again."""
        host = self.servers.network.hosts[index]
        pid = self.pid_of(index)
        store = self.jobs.store

        def ripe() -> list[Execution] | None:
            held = self.held_mid_run(pid)
            return held if len(held) >= min_held else None

        waited = wait_for(lambda: ripe() is not None, timeout=ripe_timeout, poll=0.05)
        assert waited is not None, f"host {index} never held {min_held} job(s) mid-run"
        held = ripe()
        assert held is not None
        leases = [store.client.get(keys.lease(e.job_id)) or "" for e in held]
        states = [store.state_of(e.job_id) for e in held]
        host.cut()
        cut = Cut(index, pid, leases[0].rsplit("/", 1)[0], time.time(), [e.job_id for e in held])
        self.cuts.append(cut)
        # The situation was reached: each held job was `active` under a lease this host's worker holds.
        assert host.is_cut()
        assert states == ["active"] * len(held), states
        assert all(lease.rsplit("/", 1)[0] == cut.holder for lease in leases), leases
        assert cut.holder.endswith(f":{pid}"), cut.holder

        def taken_over() -> bool:
            executions = self.executions()
            for job_id in cut.held:
                runs = executions.get(job_id, [])
                mine = [e for e in runs if e.pid == pid and e.ended is not None and not e.completed]
                if mine:
                    cut.stopped_s[job_id] = mine[0].until - cut.at
                later = [e for e in runs if e.pid != pid and e.started > cut.at]
                if later:
                    cut.taken_over_s[job_id] = min(e.started for e in later) - cut.at
            return len(cut.taken_over_s) == len(cut.held)

        over = wait_for(taken_over, timeout=60, poll=0.1)
        time.sleep(max(0.0, cut.at + stay_cut_s - time.time()))
        host.heal()
        cut.healed_at = time.time()
        assert over is not None, f"held jobs not taken over within 60 s: {cut}\n{self.logs()[-3000:]}"

        def rejoined() -> bool:
            starts = [e.started for runs in self.executions().values() for e in runs if e.pid == pid]
            later = [at for at in starts if at > cut.healed_at]
            if later:
                cut.rejoined_s = min(later) - cut.healed_at
            return bool(later)

        back = wait_for(rejoined, timeout=90, poll=0.1)
        assert back is not None, f"host {index}'s worker ran nothing within 90 s of the heal:\n{self.worker_log(index)}"

        def completed_after_heal() -> bool:
            cut.completed_after_heal = completed_after(cut, self.executions())
            return cut.completed_after_heal > 0

        done = wait_for(completed_after_heal, timeout=60, poll=0.2)
        assert done is not None, f"host {index}'s worker completed nothing after the heal:\n{self.worker_log(index)}"
        assert self.pid_of(index) == pid, "the host's worker was replaced, not rejoined"
        return cut

    # -- the end ----------------------------------------------------------------------------------------------

    def finish(self, timeout: float = 120) -> Outcome:
        """Stop sending, wait until every job sent is final, and judge the executions."""
        self.api.stop()
        assert self.sender is not None
        self.sender.stop()
        by_sender = self.sender.sent()
        sent = {**self.api.sent.at, **by_sender.at}
        states, drained_s = wait_until_final(self.jobs.store, list(sent), timeout=timeout + len(sent) / 20)
        executions = self.executions()
        for cut in self.cuts:
            cut.completed_after_heal = completed_after(cut, executions)
        alongside, twice, again = judge(executions, self.cuts)
        lost = [
            f"{job_id}: record says {state}; tally says {describe(executions.get(job_id, [])) or 'never ran'}"
            for job_id, state in states.items()
            if state != "completed"
        ]
        notes = [
            *(cut.describe() for cut in self.cuts),
            f"API answers {dict(self.api.answers)}; actor.send() confirmed {len(by_sender.at)}, gave up "
            f"{by_sender.refused}",
            f"all final {drained_s:.0f} s after sending stopped",
        ]
        if lost or alongside or twice:
            notes.append(f"worker logs: {keep(self.logs())}")
        return Outcome(
            sent=len(sent),
            states=Counter(state or "missing" for state in states.values()),
            lost=lost,
            alongside=alongside,
            twice=twice,
            again_after_cut=again,
            completed_twice=completed_twice(self.jobs, list(sent)),
            cuts=self.cuts,
            notes=notes,
        )

    def worker_log(self, index: int) -> str:
        return self.workers[index].output()[-4000:]

    def logs(self) -> str:
        return "\n".join(f"---- host {i} ----\n{w.output()}" for i, w in enumerate(self.workers))


def completed_after(cut: Cut, executions: dict[str, list[Execution]]) -> int:
    """Jobs the cut host's worker started after the heal and completed."""
    mine = [e for runs in executions.values() for e in runs if e.pid == cut.pid]
    return sum(1 for e in mine if e.completed and e.started > cut.healed_at)


def judge(
    executions: dict[str, list[Execution]], cuts: list[Cut]
) -> tuple[dict[str, list[Execution]], dict[str, list[Execution]], dict[str, list[Execution]]]:
    """Jobs run alongside (two executions overlapping in time), jobs whose side effect happened twice with no cut to
    explain it, and jobs run again because the earlier execution finished on a host cut before its outcome could be
    recorded (from just before the cut until the heal): at-least-once delivery, never alongside."""
    alongside, twice, again = {}, {}, {}
    for job_id, runs in executions.items():
        runs = sorted(runs, key=lambda e: e.started)
        if any(a.overlaps(b) for i, a in enumerate(runs) for b in runs[i + 1 :]):
            alongside[job_id] = runs
        completed = [e for e in runs if e.completed]
        if len(completed) < 2:
            continue
        if all(unrecorded_by_cut(e, cuts) for e in completed[:-1]):
            again[job_id] = runs
        else:
            twice[job_id] = runs
    return alongside, twice, again


def unrecorded_by_cut(execution: Execution, cuts: list[Cut]) -> bool:
    return any(cut.pid == execution.pid and cut.at - 1.0 <= execution.until <= cut.healed_at for cut in cuts)


def completed_twice(jobs: Jobs, ids: list[str]) -> list[str]:
    """Jobs whose record's history has `completed` more than once."""
    pipe = jobs.store.client.pipeline(transaction=False)
    for job_id in ids:
        pipe.lrange(keys.history(job_id), 0, -1)
    found = []
    for job_id, history in zip(ids, pipe.execute(), strict=True):
        if sum(1 for entry in history if json.loads(entry).get("state") == "completed") > 1:
            found.append(job_id)
    return found


def keep(text: str) -> str:
    """Long logs go to a file the report names."""
    handle, path = tempfile.mkstemp(prefix="worker-hosts-", suffix=".log")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    return path
