"""Debian's promtool, which the metrics tests use to check what Prometheus will read. `make promtool` installs it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        raise AssertionError("promtool not found: run `make promtool` (Debian package prometheus)")
    return subprocess.run([tool, *args], input=stdin, capture_output=True, text=True, timeout=60)


ROOT = Path(__file__).resolve().parents[2]
