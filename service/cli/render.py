"""How the CLI prints: rich tables that fit 80 columns for people, JSON on stdout for scripts."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from service.domain.records import JobRecord

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)

_STATE_STYLE = {
    "queued": "cyan",
    "delayed": "blue",
    "active": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def emit_json(value: Any) -> None:
    # print() rather than rich: scripts get exactly one JSON document, never wrapped or coloured.
    print(json.dumps(value, default=str, ensure_ascii=False))


def when(iso: str | None) -> str:
    """ "2024-05-01T12:34:56.789Z" -> "05-01 12:34:56": enough to tell jobs apart, narrow enough for 80 columns."""
    if not iso:
        return "-"
    return iso[5:19].replace("T", " ")


def state_text(record: JobRecord) -> Text:
    label = record.state.value
    if record.state == "active" and record.progress:
        label += f" {record.progress}%"
    return Text(label, style=_STATE_STYLE.get(record.state.value, ""))


def table(*columns: str, right: Sequence[str] = ()) -> Table:
    grid = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False, header_style="bold")
    for name in columns:
        grid.add_column(name, justify="right" if name in right else "left", no_wrap=name != columns[-1])
    return grid


def jobs_table(records: Sequence[JobRecord]) -> Table:
    """One row a job; a KEY column when any of them has a key (`jobs list --key K` lists a key's jobs)."""
    keyed = any(record.key is not None for record in records)
    grid = table("JOB ID", "STATE", "CREATED", "ACTOR", *(["KEY"] if keyed else []))
    for record in records:
        row: list[str | Text] = [record.jobId, state_text(record), when(record.createdAt), record.actor]
        grid.add_row(*row, *([Text(record.key or "-")] if keyed else []))  # Text: a key's "[x]" is no markup
    return grid


def key_text(key: str) -> Text:
    """A job's key, and the command that lists every job of it (quoted as a shell needs it)."""
    return Text(f"{key}  (its jobs: jobs list --key {shlex.quote(key)})")


def short_json(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def record_table(record: JobRecord) -> Table:
    grid = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    progress = f"{record.progress}%" + (f"  {record.progressMessage}" if record.progressMessage else "")
    rows: list[tuple[str, str | Text]] = [
        ("job id", record.jobId),
        ("actor", record.actor),
        ("queue", record.queue),
        *([("key", key_text(record.key))] if record.key is not None else []),
        ("state", state_text(record)),
        ("priority", record.priority),
        ("progress", progress),
        ("attempts", str(record.attempts)),
        ("created", record.createdAt or "-"),
        ("started", record.startedAt or "-"),
        ("finished", record.finishedAt or "-"),
        ("data", short_json(record.data, 1000)),
    ]
    if record.result is not None:
        rows.append(("result", short_json(record.result, 1000)))
    if record.failedReason:
        rows.append(("reason", record.failedReason))
    if record.traceId:
        rows.append(("trace", record.traceId))
    for name, value in rows:
        grid.add_row(name, value)
    return grid
