"""Run the `jobs` CLI in-process (fast, sees the test-only actors) or as the real console script."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.cli import main

JOBS = Path(sys.executable).parent / "jobs"


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Outcome:
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def run_jobs(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Outcome:
    """The installed `jobs` executable in a subprocess, with the test run's RabbitMQ vhost and Redis DB."""
    done = subprocess.run(
        [str(JOBS), *args],
        env={**os.environ, "COLUMNS": "80", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Outcome(done.returncode, done.stdout, done.stderr)
