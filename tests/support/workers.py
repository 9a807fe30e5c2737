"""Real `dramatiq service.actors` worker processes for tests, started and stopped around them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.netns_hosts import Host

ROOT = Path(__file__).resolve().parents[2]
READY = "ready for action"


class WorkerProcess:
    """`dramatiq service.actors tests.support.test_actors` with its own log file; inside a namespace `host` if given
    (its `env` must then name servers on the hosts' network address)."""

    def __init__(
        self,
        *,
        processes: int = 1,
        threads: int = 4,
        queues: list[str] | None = None,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        modules: list[str] | None = None,
        host: Host | None = None,
    ) -> None:
        self.processes = processes
        self.command = [
            sys.executable,
            "-m",
            "dramatiq",
            "service.actors",
            "tests.support.test_actors",
            *(modules or []),
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            *(extra_args or []),
        ]
        if queues:
            self.command += ["--queues", *queues]
        if host is not None:
            self.command = host.command(self.command)
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.log = Path(tempfile.mkstemp(prefix="worker-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> WorkerProcess:
        self.log.write_text("")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=out, stderr=out, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while self.output().count(READY) < self.processes:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"worker not ready after {timeout}s:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def child_pids(self) -> list[int]:
        """The worker processes (children of the dramatiq supervisor)."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
