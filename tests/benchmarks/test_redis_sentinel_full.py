"""The Redis failover test at a full count: 4,000 jobs (2,000 through the API, 2,000 from another service's
`actor.send()`), the primary SIGKILLed while they flow. `make test` runs tests/reliability/test_redis_sentinel.py
with 200; this runs the same test with RELIABILITY_SCALE=20 and prints its row of the fault table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST = "tests/reliability/test_redis_sentinel.py"


@pytest.mark.timeout(900)
def test_the_redis_failover_holds_at_a_full_count() -> None:
    env = {**os.environ, "RELIABILITY_SCALE": os.environ.get("BENCH_SENTINEL_SCALE", "20")}
    command = [sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-o",
               "timeout=800"]  # fmt: skip
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = child.communicate(timeout=850)
    except subprocess.TimeoutExpired:
        # SIGINT lets pytest run its teardowns, which stop the servers and workers it started.
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=120)
    print(stdout[stdout.find("faults injected") :] if "faults injected" in stdout else stdout[-5000:])
    assert child.returncode == 0, stdout[-5000:] + stderr[-3000:]
