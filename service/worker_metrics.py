"""Dramatiq's own Prometheus metrics for worker processes, in multi-process mode, served on WORKER_METRICS_PORT.

Dramatiq's Prometheus middleware keeps its figures in files that every worker process of one `dramatiq` command
shares, and a forked process serves their sum. Two things are done differently here:
- the middleware is inert until the worker process boots (the web process, the CLI and the scheduler load the same
  broker and must not count anything, nor write files);
- the files live in a directory per `dramatiq` command (named after its pid), so two commands on one machine never
  mix their figures; directories of commands that are gone are removed when the next one starts serving.
This module imports nothing of the service at load time: the serving process starts from a bare fork.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import dramatiq
from dramatiq.middleware import Middleware

logger = logging.getLogger(__name__)

_DIR_PREFIX = "jobservice-prometheus-"


def metrics_dir(supervisor_pid: int | None = None) -> Path:
    """The directory shared by the worker processes of one `dramatiq` command (their parent)."""
    return Path(tempfile.gettempdir()) / f"{_DIR_PREFIX}{supervisor_pid or os.getppid()}"


def _point_dramatiq_at(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    os.environ["dramatiq_prom_db"] = str(directory)  # noqa: SIM112 - the name Dramatiq reads
    from dramatiq.middleware import prometheus  # only now: it creates its directory when imported

    prometheus.DB_PATH = str(directory)


class WorkerMetrics(Middleware):
    def __init__(self, port: int) -> None:
        self.port = port
        self._inner: Any = None

    @property
    def forks(self) -> list[Any]:
        return [serve_worker_metrics] if self.port else []

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        if not self.port:
            return
        _point_dramatiq_at(metrics_dir())
        from dramatiq.middleware.prometheus import Prometheus

        self._inner = Prometheus()
        self._inner.after_process_boot(broker)

    # The hooks that count something, passed on once the process has booted; until then they do nothing.

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        if self._inner is not None:
            self._inner.after_nack(broker, message)

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        if self._inner is not None:
            self._inner.after_enqueue(broker, message, delay)

    def before_delay_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if self._inner is not None:
            self._inner.before_delay_message(broker, message)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if self._inner is not None:
            self._inner.before_process_message(broker, message)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if self._inner is not None:
            self._inner.after_process_message(broker, message, result=result, exception=exception)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if self._inner is not None:
            self._inner.after_skip_message(broker, message)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self._inner is not None:
            self._inner.after_worker_shutdown(broker, worker)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _remove_dirs_of_gone_commands() -> None:
    for directory in Path(tempfile.gettempdir()).glob(f"{_DIR_PREFIX}*"):
        try:
            pid = int(directory.name.removeprefix(_DIR_PREFIX))
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(directory, ignore_errors=True)
        except (ValueError, PermissionError):
            continue  # not ours, or a live process of another user


def serve_worker_metrics() -> int:
    """Dramatiq forks this once per `dramatiq` command: serves the sum over its worker processes until stopped."""
    port = int(os.environ.get("WORKER_METRICS_PORT", "9191") or 0)
    host = os.environ.get("WORKER_METRICS_HOST", "0.0.0.0")
    with contextlib.suppress(OSError):
        _remove_dirs_of_gone_commands()
    directory = metrics_dir()
    _point_dramatiq_at(directory)
    from prometheus_client import CollectorRegistry, make_wsgi_app, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    server = make_server(host, port, make_wsgi_app(registry), handler_class=_QuietHandler)
    logger.info("worker metrics on http://%s:%d/metrics", host, port)
    server.serve_forever()
    return 0
