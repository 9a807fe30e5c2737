"""The throughput chart's geometry: stacked bars of completed and failed jobs per minute, drawn as SVG."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from service.domain.figures import MinuteCount


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    completed_y: float
    completed_height: float
    failed_y: float
    failed_height: float
    label: str  #: shown on hover: "14:03 UTC: 12 completed, 1 failed"


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: int  #: the value at the top of the scale
    completed: int
    failed: int


def throughput_chart(minutes: list[MinuteCount], *, width: int = 600, height: int = 120) -> Chart:
    peak = max([m.completed + m.failed for m in minutes] + [1])
    slot = width / max(len(minutes), 1)
    gap = min(1.0, slot / 4)
    scale = height / peak
    bars = []
    for i, m in enumerate(minutes):
        completed_h = m.completed * scale
        failed_h = m.failed * scale
        at = datetime.fromtimestamp(m.minute_ms / 1000, tz=UTC).strftime("%H:%M")
        bars.append(
            Bar(
                x=round(i * slot + gap / 2, 2),
                width=round(slot - gap, 2),
                completed_y=round(height - completed_h, 2),
                completed_height=round(completed_h, 2),
                failed_y=round(height - completed_h - failed_h, 2),
                failed_height=round(failed_h, 2),
                label=f"{at} UTC: {m.completed} completed, {m.failed} failed",
            )
        )
    return Chart(
        width=width,
        height=height,
        bars=bars,
        peak=peak,
        completed=sum(m.completed for m in minutes),
        failed=sum(m.failed for m in minutes),
    )
