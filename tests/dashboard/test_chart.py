"""The throughput chart: one stacked bar per minute, scaled to the busiest minute."""

from __future__ import annotations

from service.domain.figures import MinuteCount
from service.web.dashboard.chart import throughput_chart


def test_bars_stack_failed_on_completed_and_the_busiest_minute_fills_the_height() -> None:
    minutes = [MinuteCount(0, 0, 0), MinuteCount(60_000, 6, 2), MinuteCount(120_000, 2, 0)]
    chart = throughput_chart(minutes, width=300, height=100)
    assert (chart.peak, chart.completed, chart.failed) == (8, 8, 2)
    empty, busy, light = chart.bars
    assert empty.completed_height == 0 and empty.failed_height == 0
    assert (busy.completed_height, busy.failed_height) == (75.0, 25.0)
    assert busy.failed_y == 0 and busy.completed_y == 25.0
    assert light.completed_height == 25.0
    assert [b.x for b in chart.bars] == [0.5, 100.5, 200.5]
    assert busy.label == "00:01 UTC: 6 completed, 2 failed"


def test_an_idle_hour_draws_empty_bars_rather_than_dividing_by_zero() -> None:
    chart = throughput_chart([MinuteCount(i * 60_000, 0, 0) for i in range(60)])
    assert chart.peak == 1 and len(chart.bars) == 60
    assert all(b.completed_height == 0 for b in chart.bars)
