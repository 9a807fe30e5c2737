"""Activity reports: what the job store says happened in a time window, per actor, written safely to REPORTS_DIR."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from service.domain.clock import iso_from_ms
from service.domain.reports import report_path
from service.domain.states import JobState
from service.store.job_store import JobStore

STATES = [s.value for s in JobState]
TOP_REASONS = 3
COLUMNS = ["actor", "total", *STATES, "mean_duration_ms", "p95_duration_ms", "top_failure_reasons"]


@dataclass
class ActorActivity:
    actor: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    durations_ms: list[int] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)

    def row(self) -> dict[str, Any]:
        ordered = sorted(self.durations_ms)
        mean = round(sum(ordered) / len(ordered)) if ordered else None
        p95 = ordered[math.ceil(0.95 * len(ordered)) - 1] if ordered else None  # nearest rank
        return {
            "actor": self.actor,
            "total": sum(self.counts.values()),
            **self.counts,
            "mean_duration_ms": mean,
            "p95_duration_ms": p95,
            "top_failure_reasons": [{"reason": r, "count": n} for r, n in self.reasons.most_common(TOP_REASONS)],
        }


def _ms(iso: str | None) -> int | None:
    if not iso:
        return None
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except ValueError:
        return None


def _reason(text: str) -> str:
    """Failure reasons are grouped on their first line, so one traceback's noise does not split a group."""
    return (text.strip().splitlines() or [""])[0][:160]


Progress = Callable[[float, str], None]


def collect(store: JobStore, since_ms: int, until_ms: int, progress: Progress) -> list[dict[str, Any]]:
    """One row per actor with jobs created in the window; progress goes from 0 to 90 as actors are read."""
    actors = store.actors()
    fields = ["state", "startedAt", "finishedAt", "failedReason"]
    rows = []
    for done, actor in enumerate(actors):
        activity = ActorActivity(actor)
        for batch in store.window(actor, since_ms, until_ms, fields):
            for job in batch:
                state = job["state"] or ""
                if state in activity.counts:
                    activity.counts[state] += 1
                started, finished = _ms(job["startedAt"]), _ms(job["finishedAt"])
                if state in ("completed", "failed") and started is not None and finished is not None:
                    activity.durations_ms.append(max(0, finished - started))
                if state == "failed" and job["failedReason"]:
                    activity.reasons[_reason(job["failedReason"])] += 1
        if sum(activity.counts.values()):
            rows.append(activity.row())
        progress(90 * (done + 1) / max(1, len(actors)), f"read {actor} ({done + 1} of {len(actors)} actors)")
    return rows


def render(rows: list[dict[str, Any]], fmt: str, since_ms: int, until_ms: int) -> bytes:
    if fmt == "json":
        document = {"since": iso_from_ms(since_ms), "until": iso_from_ms(until_ms), "actors": rows}
        return json.dumps(document, indent=2).encode()
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        reasons = "; ".join(f"{r['reason']} ({r['count']})" for r in row["top_failure_reasons"])
        writer.writerow({**row, "top_failure_reasons": reasons})
    return out.getvalue().encode()


def write_atomically(reports_dir: Path, name: str, data: bytes) -> Path:
    """Readers see the old file or the whole new one, never a half-written one: temp file, fsync, rename."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    target = report_path(reports_dir, name)
    handle, temp = tempfile.mkstemp(dir=reports_dir, prefix=".partial-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        # A time limit can interrupt us anywhere here: leave no temp file behind.
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    directory = os.open(reports_dir, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
    return target


@dataclass(frozen=True)
class Written:
    name: str
    rows: int
    bytes: int
    since: str
    until: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def generate(
    store: JobStore, reports_dir: Path, name: str, fmt: str, since_ms: int, until_ms: int, progress: Progress
) -> Written:
    progress(0, "reading the job store")
    rows = collect(store, since_ms, until_ms, progress)
    data = render(rows, fmt, since_ms, until_ms)
    progress(95, f"writing {name}")
    write_atomically(reports_dir, name, data)
    return Written(name, len(rows), len(data), iso_from_ms(since_ms), iso_from_ms(until_ms))
