"""The rows of the fault table that the reliability tests fill in and pytest prints at the end of the run.

Kept apart from the fault harness (which declares the chaos jobs) so that the root conftest can print the table,
and gather the rows from pytest-xdist workers, without declaring those jobs in every test process.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class FaultReport:
    """One row of the table printed at the end of the run."""

    fault: str
    checked: str
    sent: int = 0
    completed: int = 0
    lost: int = 0
    run_twice: int = 0
    recovery_s: float | None = None
    notes: list[str] = field(default_factory=list)


#: Rows collected during the session (in each xdist worker, then sent to the controller, which prints them).
REPORTS: list[FaultReport] = []


def dumps(reports: list[FaultReport]) -> str:
    return json.dumps([asdict(r) for r in reports])


def loads(text: str) -> list[FaultReport]:
    return [FaultReport(**row) for row in json.loads(text)]


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def table(reports: list[FaultReport]) -> list[str]:
    lines = [
        "| fault | checked | sent | completed | lost | run twice | recovery (s) | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        cells = [r.fault, r.checked, r.sent, r.completed, r.lost, r.run_twice, r.recovery_s, "; ".join(r.notes)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines
