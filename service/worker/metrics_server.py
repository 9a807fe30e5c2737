"""The HTTP side of worker metrics, run only in the process Dramatiq forks to serve them (service/worker/metrics.py):
at each scrape it asks every worker process of its `dramatiq` command for a sample and serves their sum."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from service.worker.metrics import DIR_PREFIX, ask_every_process, metrics_dir
from service.worker.sample import total

logger = logging.getLogger("service.worker_metrics")


class CommandMetrics:
    """A prometheus_client collector: asks the worker processes of one command at every scrape and sums them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        samples, unanswered = ask_every_process(self.directory)
        summed = total(samples)
        yield GaugeMetricFamily(
            "jobs_worker_processes", "Worker processes that answered this scrape.", summed.processes
        )
        yield GaugeMetricFamily(
            "jobs_worker_processes_unanswered", "Worker processes that did not answer this scrape in time.", unanswered
        )
        yield GaugeMetricFamily("jobs_worker_threads", "Worker threads, busy or idle.", summed.threads)
        yield _per_queue("jobs_worker_threads_busy", "Threads running a job of the queue now.", summed.busy)
        yield _per_queue(
            "jobs_worker_messages_prefetched", "Messages received and held until a thread is free.", summed.prefetched
        )
        yield _per_queue(
            "jobs_worker_messages_delayed", "Delayed messages held in memory until they are due.", summed.delayed
        )
        yield GaugeMetricFamily(
            "jobs_worker_resident_memory_bytes", "Resident memory of the worker processes.", summed.resident_bytes
        )
        yield CounterMetricFamily(
            "jobs_worker_cpu_seconds", "User and system CPU time of the worker processes.", summed.cpu_seconds
        )


def _per_queue(name: str, documentation: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["queue"])
    for queue, n in sorted(counts.items()):
        family.add_metric([queue], n)
    return family


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _remove_dirs_of_gone_commands() -> None:
    for directory in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        try:
            pid = int(directory.name.removeprefix(DIR_PREFIX))
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(directory, ignore_errors=True)
        except (ValueError, PermissionError):
            continue  # not ours, or a live process of another user


def serve() -> int:
    """Serves the sum over this command's worker processes until stopped."""
    port = int(os.environ.get("WORKER_METRICS_PORT", "9191") or 0)
    host = os.environ.get("WORKER_METRICS_HOST", "0.0.0.0")
    with contextlib.suppress(OSError):
        _remove_dirs_of_gone_commands()
    from prometheus_client import CollectorRegistry, make_wsgi_app

    registry = CollectorRegistry(auto_describe=False)
    registry.register(CommandMetrics(metrics_dir()))
    server = make_server(host, port, make_wsgi_app(registry), handler_class=_QuietHandler)
    logger.info("worker metrics on http://%s:%d/metrics", host, port)
    server.serve_forever()
    return 0
