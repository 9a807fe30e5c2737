"""Finding a report file to serve; the report job writes them (service/kits/reports.py), by the same name rule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.domain.reports import MEDIA_TYPES, report_path


class ReportNotFound(LookupError):
    pass


@dataclass(frozen=True)
class ReportFile:
    path: Path
    media_type: str


def find_report(reports_dir: Path, name: str) -> ReportFile:
    """Raises BadReportName for a name that is no plain file name, ReportNotFound when there is no such file."""
    path = report_path(reports_dir, name)
    if not path.is_file():
        raise ReportNotFound(name)
    return ReportFile(path, MEDIA_TYPES.get(path.suffix, "application/octet-stream"))
