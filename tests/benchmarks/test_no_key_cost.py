"""Issue 17's "the cost of keys": jobs with no key drain as fast as before keys existed.

Side by side in one run: the worker of the commit before keys (BENCH_BEFORE, default the last commit of issue 15,
checked out and given its own venv under .bench/) and this checkout's worker drain the same no-op jobs sent with no
key by a plain Dramatiq client, production settings (JSON logs, worker metrics served), BENCH_ROUNDS rounds (3)
alternating which goes first, medians compared. tests/benchmarks/cold_drain.py says what is timed.

    .venv/bin/python -m pytest tests/benchmarks/test_no_key_cost.py -p no:cacheprovider -s -o addopts="" -q
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
from pathlib import Path

import pytest

from service.bootstrap import redis_client
from tests.benchmarks.cold_drain import Run, Side, drain, service_side
from tests.support.workers import ROOT

BEFORE = os.environ.get("BENCH_BEFORE", "fbb1ae1")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
JOBS = int(os.environ.get("BENCH_JOBS", "20000"))
#: "Within noise": rounds of one side on this shared 2-core machine differ by up to about this much.
TARGET = 0.9


def checkout_of(ref: str) -> Path:
    """`ref`'s tree with its own venv, made once and kept in .bench/ (ignored by git)."""
    sha = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    tree = ROOT / ".bench" / f"tree-{sha[:12]}"
    if not (tree / ".venv" / ".installed").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        subprocess.run(["make", ".venv/.installed"], cwd=tree, check=True, capture_output=True, timeout=900)
    return tree


@pytest.fixture(scope="module")
def sides() -> tuple[Side, Side]:
    before = checkout_of(BEFORE)
    now = service_side(redis_client)
    python = str(before / ".venv" / "bin" / "python")
    then = dataclasses.replace(now, name=f"before keys ({BEFORE})", root=before, python=python)
    return dataclasses.replace(now, name="with keys"), then


def test_jobs_with_no_key_drain_as_fast_as_before_keys(sides: tuple[Side, Side]) -> None:
    runs: dict[str, list[Run]] = {side.name: [] for side in sides}
    for n in range(ROUNDS):
        for side in sides if n % 2 == 0 else sides[::-1]:
            runs[side.name].append(drain(side, JOBS, processes=2, threads=8))
    print(f"\n{JOBS} no-op jobs with no key, 2 processes x 8 threads, {ROUNDS} rounds alternating")
    medians = {}
    for name, each in runs.items():
        medians[name] = statistics.median(r.rate for r in each)
        cpu = statistics.median(r.machine_ms for r in each)
        print(f"  {name:28s} jobs/s: {', '.join(f'{r.rate:.0f}' for r in each)} (median {medians[name]:.0f}); "
              f"machine CPU ms/job median {cpu:.2f}")  # fmt: skip
    now, then = (medians[side.name] for side in sides)
    print(f"  with keys / before keys: {now / then:.2f} (target >= {TARGET})")
    assert now / then >= TARGET
