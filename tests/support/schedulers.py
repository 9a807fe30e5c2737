"""Real `periodiq service.actors` scheduler processes for tests, with their own log files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.workers import ROOT


def periodiq_command() -> list[str]:
    """The Procfile's `periodiq`, from the same environment as the tests."""
    found = Path(sys.executable).with_name("periodiq")
    return [str(found)] if found.exists() else [shutil.which("periodiq") or "periodiq"]


class SchedulerProcess:
    """`periodiq service.actors [modules]`: exactly the Procfile's command, plus test-only modules."""

    def __init__(self, *, modules: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.command = [*periodiq_command(), "service.actors", *(modules or [])]
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.log = Path(tempfile.mkstemp(prefix="scheduler-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SchedulerProcess:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, ready: Callable[[str], bool], timeout: float = 40.0) -> str:
        """Wait until the log satisfies `ready`; fail with the log if the process exits or time runs out."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not ready(self.output()):
            if self.proc.poll() is not None:
                raise AssertionError(f"scheduler exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"scheduler not ready after {timeout}s:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        return self.output()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def __enter__(self) -> SchedulerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_to_exit(
    *, modules: list[str] | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a scheduler that is expected to stop by itself (a bad configuration)."""
    return subprocess.run(
        [*periodiq_command(), "service.actors", *(modules or [])],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
