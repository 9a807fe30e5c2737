"""The servers of the high-availability tests work as the service will rely on: a 3-node RabbitMQ cluster whose quorum
queue outlives its leader, Redis whose Sentinels promote a replica holding an acknowledged write, and namespace hosts
that reach both until their network is cut, and again once it heals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.support.fault_reports import REPORTS, FaultReport
from tests.support.netns_hosts import Host, NetnsHosts
from tests.support.own_redis import OwnRedis
from tests.support.own_servers import ServerDidNotStart, fail_or_skip, started
from tests.support.rabbit_cluster import RabbitCluster
from tests.support.sentinel_redis import SentinelRedis
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
#: How long a probe in a namespace host waits for each connect: short, since a cut host waits it out at every server.
PROBE_TIMEOUT_S = 1.0
#: The same for a host expected to reach everything: long enough for a machine loaded by other tests (a Sentinel
#: that answered in over a second once made MasterNotFoundError, a ConnectionError, of a host never cut).
REACH_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def network() -> Iterator[NetnsHosts]:
    try:
        hosts = NetnsHosts(3)
    except ServerDidNotStart as error:
        fail_or_skip(error)
    with hosts:
        yield hosts


@pytest.fixture(scope="module")
def cluster(network: NetnsHosts) -> Iterator[RabbitCluster]:
    with started(RabbitCluster(3, also_listen=network.address)) as nodes:
        print(f"3-node RabbitMQ cluster started and joined in {nodes.start_seconds:.1f} s")
        yield nodes


@pytest.fixture(scope="module")
def sentinels(network: NetnsHosts) -> Iterator[SentinelRedis]:
    with started(SentinelRedis(also_listen=network.address)) as servers:
        print(f"Redis primary, 2 replicas and 3 Sentinels started in {servers.start_seconds:.1f} s")
        yield servers


def connect(url: str) -> pika.BlockingConnection:
    params = pika.URLParameters(url)
    params.socket_timeout = params.blocked_connection_timeout = 5
    params.connection_attempts = 1
    return pika.BlockingConnection(params)


def test_the_cluster_forms_with_three_running_nodes(cluster: RabbitCluster) -> None:
    assert cluster.running_nodes() == {node.name for node in cluster.nodes}
    for url in cluster.urls():
        connect(url).close()


def test_a_quorum_queue_outlives_the_sigkill_of_its_leader_with_its_confirmed_message(cluster: RabbitCluster) -> None:
    queue = f"ha-probe-{uuid.uuid4().hex[:8]}"
    body = f"confirmed before the kill {uuid.uuid4()}".encode()
    connection = connect(cluster.urls()[0])
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.confirm_delivery()
    channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True)  # raises unless acked
    connection.close()

    leader = cluster.leader_of(queue)
    cluster.kill(leader)
    killed_at = time.monotonic()
    try:
        assert not leader.running() and not leader.answers(), "the leader's node still runs"
        new_leader = cluster.wait_for_new_leader(queue, instead_of=leader)
        elected_s = time.monotonic() - killed_at
        survivor = next(node for node in cluster.nodes if node is not leader and node is not new_leader)
        connection = connect(survivor.url)
        try:
            method, _, received = connection.channel().basic_get(queue, auto_ack=True)
        finally:
            connection.close()
        assert method is not None and received == body, f"the queue on {survivor.name} gave {received!r}"
    finally:
        began = time.monotonic()
        cluster.restart(leader)  # the later tests of the module want all three nodes
        rejoined_s = time.monotonic() - began
    assert cluster.running_nodes() == {node.name for node in cluster.nodes}
    REPORTS.append(
        FaultReport(
            "SIGKILL of a quorum queue's leader node (3-node cluster)",
            "message confirmed before the kill consumed from a surviving node",
            sent=1,
            completed=1,
            recovery_s=elected_s,
            notes=[
                f"new leader {new_leader.name} in {elected_s:.1f} s",
                f"killed node rejoined in {rejoined_s:.1f} s",
                f"cluster start {cluster.start_seconds:.0f} s",
            ],
        )
    )


def test_sentinel_promotes_a_replica_that_holds_a_write_a_replica_acknowledged(sentinels: SentinelRedis) -> None:
    primary = sentinels.primary()
    key, value = f"ha-probe:{uuid.uuid4().hex}", "acknowledged by a replica"
    client = primary.client(socket_timeout=2)
    client.set(key, value)
    assert client.wait(1, 1000) >= 1, "no replica acknowledged the write"
    client.close()

    killed = sentinels.kill_primary()
    killed_at = time.monotonic()
    assert killed is primary and not killed.running()

    promoted = sentinels.wait_for_new_primary(killed, timeout=20)
    promoted_s = time.monotonic() - killed_at
    assert sentinels.primary_address() == (sentinels.address, promoted.port)
    assert promoted.client().get(key) == value

    sentinels.restart_as_replica(killed)
    assert killed.client().role()[0] == "slave"
    assert sentinels.primary() is promoted
    REPORTS.append(
        FaultReport(
            "SIGKILL of the Redis primary (2 replicas, 3 Sentinels)",
            "write acknowledged by WAIT 1 read on the promoted replica",
            sent=1,
            completed=1,
            recovery_s=promoted_s,
            notes=[f"Sentinels named the new primary in {promoted_s:.1f} s", "old primary back as a replica"],
        )
    )


def probe(
    host: Host,
    network: NetnsHosts,
    cluster: RabbitCluster,
    sentinels: SentinelRedis,
    timeout_s: float = REACH_TIMEOUT_S,
) -> subprocess.Popen[bytes]:
    """tests/support/reach_probe.py started inside the host, against the servers' addresses on the network."""
    command = [sys.executable, "-m", "tests.support.reach_probe", "--timeout", str(timeout_s)]
    command += ["--amqp", *cluster.urls(network.address)]
    command += ["--sentinels", ",".join(sentinels.sentinel_addresses()), "--master", sentinels.master_name]
    return host.run(command, cwd=ROOT, stdout=subprocess.PIPE)


def outcome(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=45)
    assert proc.returncode == 0, f"the probe exited with {proc.returncode}: {out!r}"
    result: dict[str, Any] = json.loads(out)
    return result


def reached_everything(result: dict[str, Any]) -> bool:
    return (
        all(v == "connected" for v in result["connect"].values())
        and all(v == "ok" for v in result["amqp"].values())
        and all(v == "ok" for v in result["redis"].values())
    )


def test_a_namespace_host_reaches_rabbitmq_and_redis_until_its_network_is_cut_and_again_once_healed(
    network: NetnsHosts, cluster: RabbitCluster, sentinels: SentinelRedis
) -> None:
    cut, other = network.hosts[0], network.hosts[1]
    before = outcome(probe(cut, network, cluster, sentinels))
    assert reached_everything(before), before

    cut.cut()
    try:
        assert cut.is_cut()
        during = probe(cut, network, cluster, sentinels, timeout_s=PROBE_TIMEOUT_S)
        alongside = probe(other, network, cluster, sentinels)
        during_result, alongside_result = outcome(during), outcome(alongside)
        assert set(during_result["connect"].values()) == {"timed out"}, during_result
        assert not any(v == "ok" for v in [*during_result["amqp"].values(), *during_result["redis"].values()])
        assert reached_everything(alongside_result), f"a host that was not cut: {alongside_result}"
    finally:
        cut.heal()

    healed_at = time.monotonic()
    after = outcome(probe(cut, network, cluster, sentinels))
    assert reached_everything(after), after
    REPORTS.append(
        FaultReport(
            "network of one namespace host cut",
            "connects from it time out; another host carries on; all reachable again after heal",
            recovery_s=time.monotonic() - healed_at,
            notes=[f"servers reached on {network.address}", "recovery: first probe after heal"],
        )
    )


#: A test process that makes a host and a Redis on its network, says what it made, and waits to be killed.
ABANDONING = """
import json, sys, time
from tests.support.netns_hosts import NetnsHosts
from tests.support.own_redis import OwnRedis
hosts = NetnsHosts(1)
server = OwnRedis(also_listen=hosts.address).start()
sleeper = hosts.hosts[0].run(["sleep", "300"])
made = {"namespace": hosts.hosts[0].name, "bridge": hosts.bridge, "redis": server.proc.pid, "sleeper": sleeper.pid}
print(json.dumps(made), flush=True)
time.sleep(300)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_hosts_and_servers_a_killed_test_process_left_are_removed_by_the_next_one() -> None:
    abandoning = subprocess.Popen([sys.executable, "-c", ABANDONING], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert abandoning.stdout is not None
        made = json.loads(abandoning.stdout.readline())
    finally:
        abandoning.kill()
        abandoning.wait(10)
    assert made["namespace"] in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert alive(made["redis"]) and alive(made["sleeper"]), "what the killed process started is gone already"

    with NetnsHosts(1), OwnRedis():
        pass

    assert made["namespace"] not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert made["bridge"] not in links
    assert not alive(made["redis"]) and not alive(made["sleeper"])


def test_a_worker_in_a_namespace_host_connects_to_the_cluster_and_the_primary_from_the_hosts_address(
    network: NetnsHosts, cluster: RabbitCluster, sentinels: SentinelRedis
) -> None:
    host = network.hosts[2]
    primary_host, primary_port = sentinels.primary_address()
    env = {
        "RABBITMQ_URL": cluster.nodes[0].url_at(network.address),
        "REDIS_URL": f"redis://{primary_host}:{primary_port}/0",
    }
    with WorkerProcess(host=host, queues=["default"], env=env) as worker:
        peers = cluster.nodes[0].ctl("list_connections", "peer_host", "--quiet", "--no-table-headers")
        assert host.address in peers.split(), peers
        clients = sentinels.primary().client().client_list()
        assert host.address in {c["addr"].rsplit(":", 1)[0] for c in clients}, clients
        assert worker.proc is not None and worker.proc.poll() is None
