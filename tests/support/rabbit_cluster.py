"""A 3-node RabbitMQ cluster of the test's own, for quorum queues and a node killed under them.

Each node is an `OwnRabbit` (own name, AMQP and distribution ports, config file and folders, next to the shared node
on 127.0.0.1:5672): they boot side by side, then the second and third join the first. Nodes of a killed test run are
removed as `OwnRabbit` removes them. Give `also_listen` (a `TestNetwork` address) for processes in network namespaces.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support.own_rabbit import OwnRabbit
from tests.support.own_servers import HOST, CommandFailed, ServerDidNotStart


class RabbitCluster:
    """`size` nodes clustered by `start()`; `kill()` SIGKILLs one, `restart()` boots it again into the cluster."""

    def __init__(self, size: int = 3, *, also_listen: str | None = None) -> None:
        self.also_listen = also_listen
        self.nodes: list[OwnRabbit] = []
        try:
            for _ in range(size):
                self.nodes.append(OwnRabbit(also_listen=also_listen))
        except BaseException:
            self.close()
            raise
        #: How long `start()` took, booting and joining (for reports).
        self.start_seconds: float | None = None

    def urls(self, address: str = HOST) -> list[str]:
        """Each node's AMQP URL, on 127.0.0.1 or on `also_listen` (what a process in a namespace reaches)."""
        return [node.url_at(address) for node in self.nodes]

    def start(self, timeout: float = 180.0) -> RabbitCluster:
        """Boot every node at once, join the others to the first; return when all of them run as one cluster."""
        began = time.monotonic()
        deadline = began + timeout
        try:
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_until_it_answers(max(deadline - time.monotonic(), 1.0))
            first = self.nodes[0]
            # One at a time: two nodes joining the same node at once may both fail to lock its schema.
            for node in self.nodes[1:]:
                node.ctl("stop_app")
                node.ctl("join_cluster", first.name)
                node.ctl("start_app")
            self.wait_until_all_run(max(deadline - time.monotonic(), 1.0))
        except CommandFailed as error:
            raise ServerDidNotStart(f"the cluster did not form: {error}") from error
        self.start_seconds = time.monotonic() - began
        return self

    def live_node(self) -> OwnRabbit:
        """A node whose VM runs, to ask about the cluster."""
        for node in self.nodes:
            if node.running():
                return node
        raise AssertionError("no node of the cluster runs")

    def node_named(self, name: str) -> OwnRabbit:
        for node in self.nodes:
            if node.name == name:
                return node
        raise AssertionError(f"{name} is no node of this cluster ({[n.name for n in self.nodes]})")

    def status(self) -> dict[str, Any]:
        """`rabbitmqctl cluster_status` as JSON, asked of a node that runs."""
        status: dict[str, Any] = json.loads(self.live_node().ctl("cluster_status", "--formatter", "json"))
        return status

    def running_nodes(self) -> set[str]:
        """The names of the nodes the cluster counts as running."""
        return set(self.status()["running_nodes"])

    def wait_until_all_run(self, timeout: float = 60.0) -> None:
        """Until every node is running in the cluster and takes AMQP connections; fails when `timeout` passes."""
        names = {node.name for node in self.nodes}
        deadline = time.monotonic() + timeout
        while True:
            try:
                running = self.running_nodes()
            except CommandFailed as error:
                running = set()
                last = str(error)
            else:
                last = f"running: {sorted(running)}"
            if running >= names and all(node.answers() for node in self.nodes):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not all of {sorted(names)} running after {timeout} s; {last}")
            time.sleep(0.5)

    def leader_of(self, queue: str, vhost: str = "/") -> OwnRabbit:
        """The node that leads quorum queue `queue` now, as a running node sees it."""
        rows = json.loads(
            self.live_node().ctl("list_queues", "-p", vhost, "name", "leader", "--formatter", "json", timeout=30)
        )
        for row in rows:
            if row["name"] == queue:
                return self.node_named(row["leader"])
        raise AssertionError(f"no queue {queue!r} in vhost {vhost!r}: {rows}")

    def wait_for_new_leader(
        self, queue: str, *, instead_of: OwnRabbit, timeout: float = 30.0, vhost: str = "/"
    ) -> OwnRabbit:
        """Until a running node other than `instead_of` leads `queue`; fails when `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                leader: OwnRabbit | None = self.leader_of(queue, vhost)
                last = f"leader {leader.name if leader else None}"
            except (CommandFailed, AssertionError) as error:
                leader, last = None, str(error)
            if leader is not None and leader is not instead_of and leader.running():
                return leader
            if time.monotonic() > deadline:
                raise AssertionError(f"no new leader of {queue!r} after {timeout} s; {last}")
            time.sleep(0.5)

    def kill(self, node: OwnRabbit) -> None:
        """SIGKILL the node's Erlang VM (beam.smp), as a crash of its machine would."""
        node.kill()

    def restart(self, node: OwnRabbit, timeout: float = 120.0) -> None:
        """Boot a killed node again: it rejoins with its own data; returns when the whole cluster runs again."""
        began = time.monotonic()
        node.start(timeout)
        self.wait_until_all_run(max(timeout - (time.monotonic() - began), 1.0))

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RabbitCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
