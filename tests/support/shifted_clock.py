"""Imported by a test's scheduler process: its clock reads the real time plus the seconds written in the file named by
SCHEDULER_CLOCK_OFFSET_FILE. A test starts the process a few seconds before a whole minute on that clock (rather
than waiting up to a minute), and can move the clock on while the process is stopped, as a host that slept does.
Between two changes of the file, seconds last a second: the process is real, only the time it reads is shifted."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from service.worker import scheduler

_file = Path(os.environ.get("SCHEDULER_CLOCK_OFFSET_FILE", "/nonexistent"))
_real = scheduler.utc_now


def _shifted() -> datetime:
    return _real() + timedelta(seconds=float(_file.read_text()))


if _file.exists():
    scheduler.utc_now = _shifted
