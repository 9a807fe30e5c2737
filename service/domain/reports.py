"""A report's file name: what it may be and where its file lies, the one rule the report job writes by
(service/kits/reports.py) and the API serves by (service/ops/reports.py)."""

from __future__ import annotations

import re
from pathlib import Path

#: A report name is a plain file name: no directory part, no leading dot.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
#: How each kind of report is served.
MEDIA_TYPES = {".csv": "text/csv; charset=utf-8", ".json": "application/json"}


class BadReportName(ValueError):
    """The name has a directory part, a leading dot or characters a report name never has."""


def report_path(reports_dir: Path, name: str) -> Path:
    """The file for a report name, refusing anything that could point outside the reports directory."""
    if not _NAME.match(name) or ".." in name:
        raise BadReportName(f"report name {name!r} must be a plain file name such as activity-<id>.csv")
    base = reports_dir.resolve()
    path = (base / name).resolve()
    if path.parent != base:  # belt and braces: a symlink or an odd name must not lead elsewhere
        raise BadReportName(f"report name {name!r} must be a plain file name")
    return path
