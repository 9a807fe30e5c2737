"""A RabbitMQ node of the test's own (its own name, ports and folders) that the test may SIGKILL and start again.

The shared node on 127.0.0.1:5672 stays up; see /work/shared/RABBITMQ-NODES.md for what a node next to it needs.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pika

from tests.support.own_servers import (
    HOST,
    ServerDidNotStart,
    claim,
    log_tail,
    own_folder,
    remove_abandoned,
    remove_folder,
    run_command,
    spare_port,
)

#: The Debian package's script; the one on PATH (/usr/sbin) wraps it in `su`, which would lose the environment.
PACKAGED = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
#: Run as root, the node runs as this user (as the packaged service does) and uses its Erlang cookie.
SERVICE_USER = "rabbitmq"
#: The folders of the test's nodes start so; nodes of a killed test run are found by it.
FOLDER_PREFIX = "own-rabbit-"


class OwnRabbit:
    """One node, booted by `start()`; `kill()` SIGKILLs its Erlang VM; `start()` again recovers its queues.

    `also_listen`: a second address (of this machine) the node takes AMQP connections on as well, with the same port.
    """

    def __init__(self, *, also_listen: str | None = None) -> None:
        remove_abandoned(FOLDER_PREFIX)
        self.name = f"jobs-test-{uuid.uuid4().hex[:8]}@localhost"
        self.port = spare_port()
        self.dist_port = spare_port(avoid=(self.port,))
        self.folder = own_folder(FOLDER_PREFIX)
        for sub in ("mnesia", "log"):
            (self.folder / sub).mkdir()
        # No plugins (no management): the node boots in about 15 s instead of 25.
        (self.folder / "enabled_plugins").write_text("[].\n")
        # /etc/rabbitmq/rabbitmq.conf pins the listener to 5672, which would win over RABBITMQ_NODE_PORT.
        config = f"listeners.tcp.local = {HOST}:{self.port}\nloopback_users = none\n"
        if also_listen is not None:
            config += f"listeners.tcp.other = {also_listen}:{self.port}\n"
        (self.folder / "rabbitmq.conf").write_text(config)
        self.user = SERVICE_USER if os.geteuid() == 0 else None
        if self.user is not None:
            account = pwd.getpwnam(self.user)
            for path in [self.folder, *self.folder.rglob("*")]:
                os.chown(path, account.pw_uid, account.pw_gid)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.url_at(HOST)

    def url_at(self, address: str) -> str:
        """The node's AMQP URL on one of the addresses it listens on (127.0.0.1 or `also_listen`)."""
        return f"amqp://guest:guest@{address}:{self.port}/%2F"

    @property
    def log(self) -> Path:
        return self.folder / "log" / f"{self.name}.log"

    def _environment(self) -> dict[str, str]:
        home = pwd.getpwnam(self.user).pw_dir if self.user else str(self.folder)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,  # where the Erlang cookie is
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_PID_FILE": str(self.folder / "node.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq.conf"),
        }

    def start(self, timeout: float = 120.0) -> OwnRabbit:
        """Boot (or boot again) and return once the node accepts an AMQP connection."""
        self.launch()
        self.wait_until_it_answers(timeout)
        return self

    def launch(self) -> None:
        """Boot (or boot again) without waiting: several nodes boot side by side."""
        assert not self.running(), "already running"
        binary = str(PACKAGED) if PACKAGED.exists() else shutil.which("rabbitmq-server")
        if binary is None:
            raise ServerDidNotStart("rabbitmq-server is not installed (Debian package rabbitmq-server)")
        with (self.folder / "console.log").open("ab") as out:
            self.proc = subprocess.Popen(
                [binary],
                env=self._environment(),
                cwd=self.folder,
                user=self.user,
                group=self.user,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so close() can end everything it started
            )
        claim(self.folder, self.proc.pid)

    def wait_until_it_answers(self, timeout: float = 120.0) -> None:
        """Return once the node takes AMQP connections; fail with its logs if it exits or `timeout` passes."""
        assert self.proc is not None, "not launched"
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None:
                raise ServerDidNotStart(f"node {self.name} exited with {self.proc.returncode}:\n{self._tails()}")
            if time.monotonic() > deadline:
                self._kill_group()
                raise ServerDidNotStart(f"node {self.name} not answering AMQP after {timeout} s:\n{self._tails()}")
            time.sleep(0.5)

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """`rabbitmqctl -n <this node> ARGS`: its output, or CommandFailed with what it said."""
        return run_command(["rabbitmqctl", "-n", self.name, *args], timeout=timeout)

    def answers(self) -> bool:
        """Whether the node accepts an AMQP connection right now (its port opens before it does)."""
        try:
            params = pika.URLParameters(self.url + "?connection_attempts=1&socket_timeout=2")
            pika.BlockingConnection(params).close()
            return True
        except (pika.exceptions.AMQPError, OSError):
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def beam_pid(self) -> int | None:
        """The Erlang VM of the node (the process group's beam.smp)."""
        if self.proc is None:
            return None
        found = subprocess.run(["pgrep", "-g", str(self.proc.pid), "beam.smp"], capture_output=True, text=True)
        pids = [int(p) for p in found.stdout.split()]
        return pids[0] if pids else None

    def kill(self) -> None:
        """SIGKILL the node's Erlang VM: no shutdown, unconfirmed messages lost, as a crash would."""
        pid = self.beam_pid()
        assert pid is not None, f"node {self.name} has no beam.smp to kill"
        os.kill(pid, signal.SIGKILL)
        self._kill_group()  # what is left of it (the wrapper script, erl_child_setup)

    def _kill_group(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def _tails(self) -> str:
        return f"{log_tail(self.folder / 'console.log', 1500)}\n{log_tail(self.log, 2500)}"

    def close(self) -> None:
        self._kill_group()
        remove_folder(self.folder)

    def __enter__(self) -> OwnRabbit:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
