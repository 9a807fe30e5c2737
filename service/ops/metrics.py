"""The figures behind the web process's GET /metrics, in Prometheus' text format.

Per queue: depth read from RabbitMQ (waiting, delayed, dead) and whether it is paused. Per actor: jobs in each
state, jobs enqueued and finished, and attempt run times, all from counters the Lua scripts keep in Redis in the
same step as each state change, so they add up across every process and machine. Per key: jobs waiting and running,
for the busiest keys (service.ops.key_metrics). The lifecycle-event stream: its length, events added and trimmed, and
each consumer group's lag (XINFO). Workers serve Dramatiq's own per-process metrics on their own port
(service.worker.metrics).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from service.domain.states import FINAL_STATES
from service.ops.activity import Activity
from service.ops.event_log import EventLog, StreamFigures
from service.ops.jobs import Jobs
from service.ops.key_metrics import key_metrics
from service.ops.queues import Queues
from service.ops.unavailable import Unavailable
from service.rabbit.link import LINK_ERRORS

#: Upper bounds of the run-time buckets, in seconds: the same list as RUN_BUCKETS in lua/common.lua.
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
#: Whatever a failing server raises through the service layer (Unavailable) or past it: that side reads as down.
STORE_ERRORS: tuple[type[BaseException], ...] = (Unavailable, redis.RedisError, OSError)
BROKER_ERRORS: tuple[type[BaseException], ...] = (Unavailable, *LINK_ERRORS, ConnectionError)
_FINAL = {s.value for s in FINAL_STATES}


class JobMetrics:
    """A prometheus_client collector, built once per process (service.bootstrap) and read afresh at every scrape."""

    def __init__(
        self, jobs: Jobs, queues: Queues, activity: Activity, events: EventLog, *, events_maxlen: int, top_keys: int
    ) -> None:
        self.jobs = jobs
        self.queues = queues
        self.activity = activity
        self.events = events
        self.events_maxlen = events_maxlen
        self.top_keys = top_keys  #: METRICS_TOP_KEYS: keys with series of their own (service/ops/key_metrics.py)
        self.registry = CollectorRegistry(auto_describe=False)  # without describe(), registering collects nothing
        self.registry.register(self)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("jobs_dependency_up", "1 when the web process could read it.", labels=["dependency"])
        try:
            yield from self._queues()
            up.add_metric(["rabbitmq"], 1)
        except BROKER_ERRORS:
            up.add_metric(["rabbitmq"], 0)
        try:
            yield from self._store()
            up.add_metric(["redis"], 1)
        except STORE_ERRORS:
            up.add_metric(["redis"], 0)
        yield up

    def _queues(self) -> Iterator[Metric]:
        depth = self.queues.depths()  # raises before anything is yielded
        waiting = GaugeMetricFamily("jobs_queue_waiting", "Messages ready in the queue.", labels=["queue"])
        delayed = GaugeMetricFamily("jobs_queue_delayed", "Messages in the queue's delay queue.", labels=["queue"])
        dead = GaugeMetricFamily("jobs_queue_dead", "Messages in the queue's dead-letter queue.", labels=["queue"])
        for name, d in depth.items():
            waiting.add_metric([name], d.waiting)
            delayed.add_metric([name], d.delayed)
            dead.add_metric([name], d.dead)
        yield from (waiting, delayed, dead)

    def _store(self) -> Iterator[Metric]:
        queue_of = self.jobs.queues_of_actors()
        queue_names = sorted(set(queue_of.values()))
        paused_queues = self.queues.paused()
        counts = self.activity.counts(list(queue_of))
        counters = self.activity.counters()
        key_load = self.activity.key_load()
        alive = self.activity.alive()

        paused = GaugeMetricFamily("jobs_queue_paused", "1 while the queue is paused.", labels=["queue"])
        for queue in queue_names:
            paused.add_metric([queue], 1 if queue in paused_queues else 0)
        in_state = GaugeMetricFamily(
            "jobs_in_state", "Jobs in the job store, by state.", labels=["queue", "actor", "state"]
        )
        for (actor, state), n in counts.items():
            in_state.add_metric([queue_of[actor], actor, state.value], n)
        enqueued = CounterMetricFamily("jobs_enqueued", "Jobs created.", labels=["queue", "actor"])
        for key, n in sorted(counters.created.items()):
            enqueued.add_metric(key.split("|", 1), n)
        finished = CounterMetricFamily(
            "jobs_finished", "Jobs that ended, by final state.", labels=["queue", "actor", "state"]
        )
        for key, n in sorted(counters.entered.items()):
            queue, actor, entered = key.split("|", 2)
            if entered in _FINAL:
                finished.add_metric([queue, actor, entered], n)
        workers = GaugeMetricFamily("jobs_workers_alive", "Worker processes with a live heartbeat.")
        workers.add_metric([], alive)
        yield from (paused, in_state, enqueued, finished, _run_times(counters.runs), workers)
        yield from key_metrics(key_load, self.top_keys)
        yield from _event_stream(self.events.figures(), self.events_maxlen)


def _event_stream(figures: StreamFigures, maxlen: int) -> Iterator[Metric]:
    """The lifecycle-event stream and each consumer group reading it (other services, the RabbitMQ export)."""
    length = GaugeMetricFamily("jobs_events_stream_length", "Lifecycle events kept in the Redis stream.")
    length.add_metric([], figures.length)
    cap = GaugeMetricFamily("jobs_events_stream_maxlen", "The stream's cap (EVENTS_STREAM_MAXLEN).")
    cap.add_metric([], maxlen)
    added = CounterMetricFamily("jobs_events_added", "Lifecycle events added to the stream.")
    added.add_metric([], figures.added)
    trimmed = CounterMetricFamily("jobs_events_trimmed", "Lifecycle events removed from the stream by its cap.")
    trimmed.add_metric([], figures.trimmed)
    lag = GaugeMetricFamily(
        "jobs_events_group_lag", "Events a consumer group has not been delivered yet.", labels=["group"]
    )
    pending = GaugeMetricFamily(
        "jobs_events_group_pending", "Events delivered to a consumer group and not acknowledged.", labels=["group"]
    )
    for group in figures.groups:
        if group.lag is not None:  # Redis cannot always tell (after XDEL); no sample beats a wrong one
            lag.add_metric([group.name], group.lag)
        pending.add_metric([group.name], group.pending)
    yield from (length, cap, added, trimmed, lag, pending)


def _run_times(runs: dict[str, float]) -> HistogramMetricFamily:
    histogram = HistogramMetricFamily(
        "jobs_run_duration_seconds",
        "How long each attempt ran, from start to its end (completed, failed, retried or cancelled).",
        labels=["queue", "actor"],
    )
    by_label: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for key, value in runs.items():
        queue, actor, field = key.split("|", 2)
        by_label[(queue, actor)][field] = value
    for (queue, actor), fields in sorted(by_label.items()):
        cumulative, buckets = 0.0, []
        for bound in RUN_BUCKETS:
            cumulative += fields.get(f"{bound:g}", 0)
            buckets.append((repr(float(bound)), cumulative))  # "1.0", as prometheus-client writes its own
        buckets.append(("+Inf", fields.get("count", 0)))
        histogram.add_metric([queue, actor], buckets, fields.get("sum", 0.0))
    return histogram
