"""`jobs send --wait`: follow a job to its end, drawing its progress and message as it goes."""

from __future__ import annotations

import time

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from service.cli import render
from service.domain.records import JobRecord
from service.domain.states import FINAL_STATES
from service.ops.jobs import Jobs

POLL_S = 0.2


def _label(record: JobRecord) -> str:
    return f"{record.state.value}: {record.progressMessage}" if record.progressMessage else record.state.value


def wait_with_progress(jobs: Jobs, job_id: str, timeout_s: float | None, *, show: bool = True) -> JobRecord:
    """Poll the store until the job is final. A terminal gets a live bar; a pipe gets one line per change."""
    deadline = time.monotonic() + timeout_s if timeout_s else None
    live = show and render.err.is_terminal
    last_line = ""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=render.err,
        disable=not live,
        transient=False,
    ) as bar:
        task = bar.add_task("queued", total=100)
        while True:
            record = jobs.get(job_id)
            label = _label(record)
            bar.update(task, completed=record.progress, description=label)
            if show and not live:
                line = f"{record.progress:3d}% {label}"
                if line != last_line:
                    render.err.print(line, markup=False, highlight=False)
                    last_line = line
            if record.state in FINAL_STATES:
                return record
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting after {timeout_s:g}s: job {job_id} is {label}")
            time.sleep(POLL_S)
