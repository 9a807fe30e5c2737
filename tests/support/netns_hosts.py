"""Worker "hosts" of the test's own as Linux network namespaces, whose network the test can cut and heal.

The layout, made by `NetnsHosts(count)` (needs root and `ip`; this machine has neither nft nor iptables):

    root namespace   bridge jt<id>b, address 10.231.X.1/24: the *network address*
    host i           namespace jobs-test-<id>-<i>, its eth0 10.231.X.(10+i)/24, a veth pair whose other end
                     jt<id>h<i> stays in the root namespace, on the bridge

X is a /24 of 10.231.0.0/16 that no address or route of the machine overlaps, chosen under a lock file, and <id> is
random, so parallel pytest-xdist workers never share a name or a subnet. A host has no default route: it reaches the
bridge and the other hosts, nothing else.

How a process in a host reaches the test's servers: 127.0.0.1 inside a namespace is the namespace's own loopback, so
servers on 127.0.0.1 of the root namespace are out of its reach. They must listen on the network address as well
(same port): `OwnRabbit(also_listen=net.address)`, `RabbitCluster(also_listen=net.address)`,
`OwnRedis(also_listen=net.address)`, `SentinelRedis(also_listen=net.address)`. Processes in a host then use
`cluster.urls(net.address)` and `sentinels.sentinel_addresses()`; a SentinelRedis given the network address has its
replicas and Sentinels use it too, so the primary a Sentinel names is reachable from the hosts (and from the root
namespace, where the address is local). The network exists before those servers start, since they bind to it.

`cut()` takes the host's root-side veth down: the host's packets are dropped without an answer. The neighbour entries
on both sides are permanent, so no ARP failure turns that into "no route to host": a connect times out and an open
connection stalls, as behind a cut cable. `heal()` brings the link up again; connections open at once.

`close()` ends every process started in the hosts, deletes the namespaces and the bridge; a later NetnsHosts removes
those of a test process that was killed before it could.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.support.own_servers import (
    CommandFailed,
    ServerDidNotStart,
    abandoned,
    claim,
    own_folder,
    remove_folder,
    run_command,
)

#: The /24s hosts are numbered from; the test picks one that nothing on the machine uses.
SUBNETS = ipaddress.IPv4Network("10.231.0.0/16")
#: Each network's folder (named in its `id` file) marks it as the test process's; see own_servers.abandoned.
FOLDER_PREFIX = "netns-hosts-"
#: Held while a subnet is chosen and taken (and abandoned networks removed), so two test processes never pick one.
LOCK_FILE = Path(tempfile.gettempdir()) / "netns-hosts.lock"
#: Hosts are numbered from here inside their /24 (.1 is the bridge).
FIRST_HOST = 10


def ip(*args: str) -> str:
    return run_command(["ip", *args], timeout=20)


def namespace_name(network_id: str, index: int) -> str:
    return f"jobs-test-{network_id}-{index}"


def mac(subnet_index: int, last: int) -> str:
    """Fixed, locally administered: the permanent neighbour entries name them before any packet flows."""
    return f"02:00:0a:e7:{subnet_index:02x}:{last:02x}"


class Host:
    """One namespace with its link to the bridge; processes started by `run()` live in it."""

    def __init__(self, network: NetnsHosts, index: int) -> None:
        self.index = index
        self.name = namespace_name(network.id, index)
        #: This host's own address, in its namespace.
        self.address = str(network.subnet.network_address + FIRST_HOST + index)
        #: Its end of the link in the root namespace, on the bridge; down while the host is cut off.
        self.root_link = f"jt{network.id}h{index}"
        self.mac = mac(network.subnet_index, FIRST_HOST + index)
        self.processes: list[subprocess.Popen[bytes]] = []

    def run(self, command: Sequence[str], **options: Any) -> subprocess.Popen[bytes]:
        """Start `command` inside the host (`ip netns exec`), in a process group of its own that `close()` ends.
        `options` go to Popen (env, cwd, stdout, ...)."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *command], start_new_session=True, **options
        )
        self.processes.append(proc)
        return proc

    def cut(self) -> None:
        """Off the network: its packets and those sent to it are dropped, nothing answers."""
        ip("link", "set", self.root_link, "down")

    def heal(self) -> None:
        ip("link", "set", self.root_link, "up")

    def is_cut(self) -> bool:
        state = json.loads(ip("-j", "link", "show", self.root_link))[0]
        return "UP" not in state["flags"]

    def end_processes(self) -> None:
        for proc in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.processes.clear()


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    with LOCK_FILE.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the machine has an address in or a route to, in any routing table."""
    used = []
    for link in json.loads(ip("-j", "-4", "addr", "show")):
        for info in link.get("addr_info", []):
            used.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all")):
        destination = route.get("dst", "")
        if destination and destination != "default":
            with contextlib.suppress(ValueError):
                used.append(ipaddress.IPv4Network(destination, strict=False))
    return used


def _remove_network(network_id: str) -> None:
    """Everything of the network `network_id`: its hosts' processes, namespaces and links, and its bridge."""
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(f"jobs-test-{network_id}-"):
            continue
        with contextlib.suppress(CommandFailed):
            for pid in ip("netns", "pids", name).split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(CommandFailed):
            ip("netns", "delete", name)
    for link in json.loads(ip("-j", "link", "show")):
        if link["ifname"].startswith(f"jt{network_id}"):
            with contextlib.suppress(CommandFailed):
                ip("link", "delete", link["ifname"])


def remove_abandoned_networks() -> None:
    for folder, _ in abandoned(FOLDER_PREFIX):
        with contextlib.suppress(OSError, CommandFailed):
            _remove_network((folder / "id").read_text().strip())
        remove_folder(folder)


class NetnsHosts:
    """`count` hosts on a bridge of their own; `address` is where they reach the test's servers."""

    def __init__(self, count: int = 3) -> None:
        if os.geteuid() != 0:
            raise ServerDidNotStart("network namespaces need root (ip netns add)")
        self.id = uuid.uuid4().hex[:6]
        self.bridge = f"jt{self.id}b"
        self.folder = own_folder(FOLDER_PREFIX)
        (self.folder / "id").write_text(self.id)
        claim(self.folder, 0)  # before anything is made, so a run killed half-way is cleaned up too
        self.hosts: list[Host] = []
        try:
            with _machine_lock():
                remove_abandoned_networks()
                self.subnet_index, self.subnet = self._free_subnet()
                #: The root namespace's address on the bridge: servers listen here too for the hosts to reach them.
                self.address = str(self.subnet.network_address + 1)
                ip("link", "add", self.bridge, "address", mac(self.subnet_index, 1), "type", "bridge")
                ip("addr", "add", f"{self.address}/{self.subnet.prefixlen}", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for index in range(count):
                self._add_host(index)
        except CommandFailed as error:
            self.close()
            raise ServerDidNotStart(f"could not make the hosts' network: {error}") from error
        except BaseException:
            self.close()
            raise

    def _free_subnet(self) -> tuple[int, ipaddress.IPv4Network]:
        used = _networks_in_use()
        for index, subnet in enumerate(SUBNETS.subnets(new_prefix=24)):
            if not any(subnet.overlaps(network) for network in used):
                return index, subnet
        raise ServerDidNotStart(f"every /24 of {SUBNETS} is in use on this machine")

    def _add_host(self, index: int) -> None:
        host = Host(self, index)
        self.hosts.append(host)
        prefix = self.subnet.prefixlen
        ip("netns", "add", host.name)
        # The pair is made with its inner end already in the namespace, named eth0 there.
        ip(
            "link",
            "add",
            host.root_link,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            host.mac,
            "netns",
            host.name,
        )
        ip("link", "set", host.root_link, "master", self.bridge, "up")
        ip("-n", host.name, "link", "set", "lo", "up")
        ip("-n", host.name, "addr", "add", f"{host.address}/{prefix}", "dev", "eth0")
        ip("-n", host.name, "link", "set", "eth0", "up")
        bridge_mac = mac(self.subnet_index, 1)
        ip("-n", host.name, "neigh", "replace", self.address, "lladdr", bridge_mac, "dev", "eth0", "nud", "permanent")
        ip("neigh", "replace", host.address, "lladdr", host.mac, "dev", self.bridge, "nud", "permanent")

    def close(self) -> None:
        for host in self.hosts:
            host.end_processes()
        with contextlib.suppress(CommandFailed, OSError):
            _remove_network(self.id)
        remove_folder(self.folder)

    def __enter__(self) -> NetnsHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
