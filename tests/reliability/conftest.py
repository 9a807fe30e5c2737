"""Fault tests: the table of what each fault did is printed at the end of the run."""

from __future__ import annotations

import pytest

from tests.reliability.harness import REPORTS


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("faults injected")
    write("| fault | checked | sent | completed | lost | run twice | recovery (s) | notes |")
    write("|---|---|---|---|---|---|---|---|")
    for r in REPORTS:
        cells = [r.fault, r.checked, r.sent, r.completed, r.lost, r.run_twice, r.recovery_s, "; ".join(r.notes)]
        write("| " + " | ".join(_cell(c) for c in cells) + " |")
