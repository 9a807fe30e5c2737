"""Waiting and running jobs per key on GET /metrics, for the busiest keys only: a label value per key would let a
tenant count of any size become as many series, so the top METRICS_TOP_KEYS keys by waiting + running get their own
and every other key is summed under key="(other)".

The counts come from two hashes the store's scripts keep in the step that changes a job's state (move_key in
service/store/lua/common.lua), holding only keys that have jobs waiting or running: a scrape reads what is busy now,
never the history of every key.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric

from service.store.job_store import KeyLoad

#: The label value the keys beyond the top ones are summed under. A real key spelled so is summed there too: a
#: second series with the same labels would be invalid.
OTHER = "(other)"


@dataclass(frozen=True)
class KeyRow:
    """One series pair: a key's (or the rest's) jobs of one actor."""

    queue: str
    actor: str
    key: str  #: the key, or OTHER
    waiting: int
    running: int


@dataclass(frozen=True)
class KeyFigures:
    rows: list[KeyRow]  #: the top keys' rows, then the rest's, by queue and actor
    keys_waiting: int  #: distinct keys with a job waiting (queued or delayed)
    keys_running: int  #: distinct keys with a job running (active)


def busiest(load: KeyLoad, top: int) -> KeyFigures:
    """The `top` keys by waiting + running (over every queue and actor; ties by name), each with its own rows, and the
    rest summed per queue and actor under OTHER. Every job is in exactly one row."""
    parsed: list[tuple[str, str, str, int, int]] = []  # queue, actor, key, column (0 waiting, 1 running), count
    per_key: dict[str, int] = {}
    busy: tuple[set[str], set[str]] = (set(), set())
    for column, counts in enumerate((load.waiting, load.running)):
        for field, n in counts.items():
            queue, actor, key = field.split("|", 2)  # queue and actor names hold no "|"; a key may
            parsed.append((queue, actor, key, column, n))
            per_key[key] = per_key.get(key, 0) + n
            busy[column].add(key)
    per_key.pop(OTHER, None)
    shown = set(heapq.nsmallest(top, per_key, key=lambda k: (-per_key[k], k)))
    summed: dict[tuple[str, str, str], list[int]] = {}
    for queue, actor, key, column, n in parsed:
        labels = (queue, actor, key if key in shown else OTHER)
        summed.setdefault(labels, [0, 0])[column] += n
    order = sorted(summed, key=lambda labels: (labels[2] == OTHER, -per_key.get(labels[2], 0), labels))
    return KeyFigures(
        rows=[KeyRow(*labels, *summed[labels]) for labels in order],
        keys_waiting=len(busy[0]),
        keys_running=len(busy[1]),
    )


def key_metrics(load: KeyLoad, top: int) -> Iterator[Metric]:
    figures = busiest(load, top)
    labels = ["queue", "actor", "key"]
    waiting = GaugeMetricFamily(
        "jobs_key_waiting",
        f'Jobs waiting (queued or delayed) per key, for the busiest keys; the rest summed under key="{OTHER}".',
        labels=labels,
    )
    running = GaugeMetricFamily(
        "jobs_key_running",
        f'Jobs running (active) per key, for the busiest keys; the rest summed under key="{OTHER}".',
        labels=labels,
    )
    for row in figures.rows:
        waiting.add_metric([row.queue, row.actor, row.key], row.waiting)
        running.add_metric([row.queue, row.actor, row.key], row.running)
    keys_waiting = GaugeMetricFamily("jobs_keys_waiting", "Distinct keys with a job waiting (queued or delayed).")
    keys_waiting.add_metric([], figures.keys_waiting)
    keys_running = GaugeMetricFamily("jobs_keys_running", "Distinct keys with a job running (active).")
    keys_running.add_metric([], figures.keys_running)
    yield from (waiting, running, keys_waiting, keys_running)
