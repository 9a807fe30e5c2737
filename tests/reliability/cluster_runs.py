"""What the RabbitMQ cluster tests share (tests/reliability/test_rabbit_cluster.py, and the full count in
tests/benchmarks/test_rabbit_cluster_full.py): a vhost of each test's own on the cluster, service layers and workers
in quorum mode, and the scenario that kills the node leading the queues while jobs flow, with its figures."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pika

from service.ops.dead_jobs import DeadJobs
from service.ops.jobs import Jobs
from service.rabbit.dead_letters import DeadLetters
from service.rabbit.queue_types import QueueShape, QueueType
from tests.reliability.executions import Execution, describe, executions_of, run_twice, running_at
from tests.reliability.harness import (
    CHAOS_MODULES,
    FaultReport,
    jobs_through,
    summarise,
    wait_for,
    wait_until_final,
    worker_env,
)
from tests.reliability.senders import ApiSender, SenderProcess
from tests.support.chaos_actors import QUEUE, tally_client, tally_key
from tests.support.rabbit_cluster import RabbitCluster
from tests.support.workers import WorkerProcess

QUORUM_SHAPE = QueueShape(QueueType.QUORUM)
#: What a worker logs as a consumer of the chaos queue starts, before the node it reached (service/rabbit/link.py).
CONSUMING = f"consuming {QUEUE} through "


@contextlib.contextmanager
def own_vhost(cluster: RabbitCluster) -> Iterator[str]:
    """A vhost of the test's own on the cluster: queues of one test never meet another's (nor their arguments)."""
    name = f"cluster-test-{uuid.uuid4().hex[:8]}"
    node = cluster.live_node()
    node.ctl("add_vhost", name)
    node.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield name
    finally:
        # With a node lost, deleting its quorum queues waits for that node's members: the cluster goes with the module.
        if all(node.running() for node in cluster.nodes):
            cluster.live_node().ctl("delete_vhost", name)


def node_urls(cluster: RabbitCluster, vhost: str, order: list[int] | None = None) -> list[str]:
    """The nodes' URLs in `vhost`, in the order a process tries them (its first reachable node is the one it uses)."""
    urls = [url.rsplit("/", 1)[0] + "/" + quote(vhost, safe="") for url in cluster.urls()]
    return [urls[i] for i in (order if order is not None else range(len(urls)))]


def quorum_jobs(urls: list[str]) -> Jobs:
    """A service layer in quorum mode, as an API process has it (the list as the settings hold it: ";"-joined)."""
    return jobs_through(";".join(urls), os.environ["REDIS_URL"], rabbitmq_queue_type=QueueType.QUORUM.value)


def dead_jobs_of(jobs: Jobs) -> DeadJobs:
    """The service's dead-letter view over a service layer of the test's own (the API's routes use the process's)."""
    return DeadJobs(jobs, DeadLetters(jobs.link), jobs.store.client)


def quorum_env(urls: list[str], **extra: str) -> dict[str, str]:
    """A worker's environment in quorum mode; RABBITMQ_URL lists the nodes comma-separated, as a person writes it."""
    return {**worker_env(), "RABBITMQ_URL": ",".join(urls), "RABBITMQ_QUEUE_TYPE": "quorum", **extra}


def quorum_worker(urls: list[str], *, threads: int = 4) -> WorkerProcess:
    return WorkerProcess(
        processes=1, threads=threads, queues=[QUEUE], env=quorum_env(urls), modules=CHAOS_MODULES
    ).start(timeout=60)


def connect(url: str) -> pika.BlockingConnection:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = params.blocked_connection_timeout = 5
    return pika.BlockingConnection(params)


def ready(url: str, *queues: str) -> int:
    """Ready messages in the queues (passive declares: nothing is created)."""
    connection = connect(url)
    try:
        channel = connection.channel()
        return sum(int(channel.queue_declare(q, passive=True).method.message_count) for q in queues)
    finally:
        connection.close()


def starts(run: str) -> list[tuple[str, int, float]]:
    """(job id, pid, time) of every execution's start, in the order they started."""
    found = []
    for line in tally_client.lrange(tally_key(run, "starts"), 0, -1):
        job_id, pid, at = line.split()[:3]
        found.append((job_id, int(pid), float(at)))
    return sorted(found, key=lambda entry: entry[2])


def done_count(run: str) -> int:
    return int(tally_client.llen(tally_key(run, "done")))


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


@dataclass
class LeaderKill:
    """What the leader-kill scenario measured."""

    sent: int
    completed: int
    lost: list[str]
    twice: dict[str, list[Execution]]
    #: Seconds from the SIGKILL until: a new leader led the queue; the API, actor.send() and the worker that had been
    #: connected to the killed node each worked again (a 202, a confirmed send, its consumer on a surviving node).
    elected_s: float
    api_back_s: float | None
    sender_back_s: float | None
    worker_back_s: float | None
    running_at_kill: int
    queued_at_kill: int
    notes: list[str]

    @property
    def recovery_s(self) -> float | None:
        """Until every one of them worked again."""
        times = [self.api_back_s, self.sender_back_s, self.worker_back_s]
        return None if None in times else max(t for t in times if t is not None)

    def report(self, fault: str) -> FaultReport:
        return FaultReport(
            fault,
            "every confirmed job completes once; workers, API and actor.send() reconnect to a surviving node",
            sent=self.sent,
            completed=self.completed,
            lost=len(self.lost),
            run_twice=len(self.twice),
            recovery_s=self.recovery_s,
            notes=[
                f"new leader after {seconds(self.elected_s)}; API back after {seconds(self.api_back_s)}, "
                f"actor.send() after {seconds(self.sender_back_s)}, the worker on the killed node after "
                f"{seconds(self.worker_back_s)} (consuming through a surviving node)",
                *self.notes,
            ],
        )

    def check(self) -> None:
        """The situation was reached (jobs running and queued when the node died, and every way in worked again
        after it), and no confirmed job was lost or run twice."""
        assert self.running_at_kill > 0 and self.queued_at_kill > 0, self.notes
        assert self.recovery_s is not None, self.notes
        assert not self.lost, "\n".join(self.lost[:20] + self.notes)
        assert not self.twice, f"{len(self.twice)} run twice: {list(self.twice)[:10]}"


def queue_names(queue: str) -> list[str]:
    return [name for name, _ in QUORUM_SHAPE.declarations(queue)]


def kill_the_leader_under_load(
    cluster: RabbitCluster,
    vhost: str,
    *,
    ms: int,
    api_per_second: float,
    sender_pause_s: float,
    threads: int,
    before_kill_done: int,
    after_kill_s: float,
    long_every: int = 25,
    at_kill: Callable[[], None] = lambda: None,
) -> LeaderKill:
    """Every queue of "chaos" led by the first node; two workers (the first connected to that node, the second to
    another), the API and an actor.send() process (both connected to that node) at work; the node SIGKILLed once
    jobs have run and a backlog waits (`at_kill` is called just before); sending goes on for `after_kill_s`, then
    every confirmed job must end."""
    run = uuid.uuid4().hex[:8]
    doomed = cluster.nodes[0]
    on_doomed = node_urls(cluster, vhost, [0, 1, 2])
    elsewhere = node_urls(cluster, vhost, [1, 2, 0])
    # A quorum queue's leader starts on the node its declaring client is connected to.
    quorum_jobs(on_doomed[:1]).link.run(lambda link: link.ensure_queue(QUEUE))
    leaders = {name: cluster.leader_of(name, vhost).name for name in queue_names(QUEUE)}
    assert set(leaders.values()) == {doomed.name}, f"the queues are not all led by {doomed.name}: {leaders}"

    with contextlib.ExitStack() as stack:
        workers = []
        for urls in (on_doomed, elsewhere):
            workers.append(quorum_worker(urls, threads=threads))
            stack.callback(workers[-1].stop, timeout=20)
        api = ApiSender(quorum_jobs(on_doomed), run, ms=ms, per_second=api_per_second, long_every=long_every)
        sender: SenderProcess | None = None
        try:
            api.start()
            sender = SenderProcess(run, quorum_env(on_doomed), ms=ms, pause_s=sender_pause_s)
            backlog = wait_for(
                lambda: done_count(run) >= before_kill_done and ready(elsewhere[0], QUEUE) >= 20, timeout=90, poll=0.2
            )
            assert backlog is not None, f"no backlog of running and queued jobs: {done_count(run)} done"
            queued_at_kill = ready(elsewhere[0], QUEUE)
            at_kill()
            killed_at = time.time()
            cluster.kill(doomed)
            new_leader = cluster.wait_for_new_leader(QUEUE, instead_of=doomed, vhost=vhost, timeout=60)
            elected_s = time.time() - killed_at
            first_worker = workers[0].child_pids()[0]
            consuming_before = workers[0].output().count(CONSUMING)
            # The worker that was connected to the killed node consumes again through a surviving one.
            moved = wait_for(lambda: workers[0].output().count(CONSUMING) > consuming_before, timeout=60, poll=0.1)
            assert moved is not None, "the worker on the killed node did not reconnect:\n" + workers[0].output()[-3000:]
            worker_back_s = time.time() - killed_at
            reached = workers[0].output().rsplit(CONSUMING, 1)[1].split()[0]
            assert reached in {url.split("@")[1].split("/")[0] for url in elsewhere[:2]}, reached

            def ran_a_job_sent_after_the_kill() -> bool:
                assert sender is not None
                late = set(api.sent.after(killed_at)) | set(sender.sent().after(killed_at))
                return any(pid == first_worker and job_id in late for job_id, pid, _ in starts(run))

            time.sleep(max(0.0, after_kill_s - (time.time() - killed_at)))
            ran = wait_for(ran_a_job_sent_after_the_kill, timeout=120, poll=0.5)
            assert ran is not None, "the worker on the killed node ran no job sent after the kill"
        finally:
            api.stop()
            if sender is not None:
                sender.stop()
        by_sender = sender.sent()
        confirmed = {**api.sent.at, **by_sender.at}
        states, drained_s = wait_until_final(api.jobs.store, list(confirmed), timeout=60 + len(confirmed) / 20)
        logs = "\n".join(worker.output() for worker in workers)
    executions = executions_of(run)
    counts = summarise(states)
    lost = [
        f"{job_id}: record says {state}; tally says {describe(executions.get(job_id, [])) or 'never ran'}"
        for job_id, state in states.items()
        if state != "completed"
    ]
    notes = [
        f"queues led by {doomed.name}, then by {new_leader.name}",
        f"at the kill: {running_at(executions, killed_at)} running, {queued_at_kill} queued",
        f"API answers {dict(api.answers)}; actor.send() confirmed {len(by_sender.at)}, gave up {by_sender.refused}",
        f"all final {drained_s:.0f} s after sending stopped; states {dict(counts)}",
    ]
    if lost:
        notes.append(f"worker logs: {keep(logs)}")
    return LeaderKill(
        sent=len(confirmed),
        completed=counts["completed"],
        lost=lost,
        twice=run_twice(executions),
        elected_s=elected_s,
        api_back_s=api.sent.first_after(killed_at),
        sender_back_s=by_sender.first_after(killed_at),
        worker_back_s=worker_back_s,
        running_at_kill=running_at(executions, killed_at),
        queued_at_kill=queued_at_kill,
        notes=notes,
    )


def keep(text: str) -> str:
    """Long logs go to a file the report names."""
    handle, path = tempfile.mkstemp(prefix="rabbit-cluster-", suffix=".log")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    return path
