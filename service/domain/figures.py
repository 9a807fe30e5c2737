"""Figures the store counts and the faces show: jobs that ended per minute, for the dashboard's throughput chart."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MinuteCount:
    minute_ms: int  #: start of the minute, ms since the epoch
    completed: int
    failed: int
