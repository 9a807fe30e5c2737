"""Worker metrics on WORKER_METRICS_PORT: what only the worker processes know, read at each scrape, never per job.

Job counts, failures, retries and run times are counted once, by the store (the web process's GET /metrics). A
worker adds only what nobody else knows (busy threads, messages it holds, its memory and CPU), and it does so when
asked: WorkerMetrics has no per-message hook at all. Each worker process answers on a Unix socket in a directory per
`dramatiq` command (named after its pid); the process Dramatiq forks to serve the port asks every socket at each
scrape and serves the sum. So two commands on one machine never mix their figures, and directories of commands that
are gone are removed when the next one starts serving.
The middleware is inert until a worker process boots: the web process, the CLI and the scheduler load the same
broker. This module imports no more of the service than worker_sample: the serving process starts from a bare fork.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import Middleware

from service.worker.sample import ProcessSample, sample

if TYPE_CHECKING:
    from service.worker.middleware.in_hand import JobsInHand

logger = logging.getLogger(__name__)

DIR_PREFIX = "jobservice-worker-metrics-"
#: How long the serving process waits for one worker process's answer; a process that is slower is counted as
#: unanswered for that scrape (it may hold the GIL in a long C call) rather than holding up the whole scrape.
ANSWER_TIMEOUT_S = 2.0


def metrics_dir(supervisor_pid: int | None = None) -> Path:
    """The directory shared by the worker processes of one `dramatiq` command (their parent)."""
    return Path(tempfile.gettempdir()) / f"{DIR_PREFIX}{supervisor_pid or os.getppid()}"


class WorkerMetrics(Middleware):
    """Starts a worker process's answerer at boot and stops it at shutdown; nothing in between."""

    def __init__(self, port: int, in_hand: JobsInHand) -> None:
        self.port = port
        self.in_hand = in_hand
        self._answerer: SampleAnswerer | None = None

    @property
    def forks(self) -> list[Any]:
        return [serve_worker_metrics] if self.port else []

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if not self.port:
            return
        directory = metrics_dir()
        answerer = SampleAnswerer(directory / f"{os.getpid()}.sock", lambda: sample(worker, self.in_hand))
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            answerer.start()
        except OSError:
            # Metrics are not worth a worker that runs no jobs: this process goes on, left out of the sums
            # (jobs_worker_processes shows one process fewer than the command runs).
            logger.exception("worker metrics: this process cannot answer on %s", answerer.path)
            return
        self._answerer = answerer

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self._answerer is not None:
            self._answerer.stop()
            self._answerer = None


class SampleAnswerer:
    """A thread that answers each connection to `path` with this process's sample, then closes it."""

    def __init__(self, path: Path, read: Callable[[], ProcessSample]) -> None:
        self.path = path
        self.read = read
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def start(self) -> None:
        self.path.unlink(missing_ok=True)  # left by a process of the same pid that was killed
        self._listener.bind(str(self.path))
        self._listener.listen(16)
        self._listener.settimeout(1.0)  # wakes once a second when idle, to notice stop()
        threading.Thread(target=self._answer_forever, name="worker-metrics", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        self.path.unlink(missing_ok=True)

    def _answer_forever(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            with connection:
                try:
                    connection.settimeout(ANSWER_TIMEOUT_S)
                    connection.sendall(self.read().to_json())
                except Exception:  # one failed answer must not end the answers to every later scrape
                    logger.exception("worker metrics: sample not sent")


def ask(path: Path) -> ProcessSample:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(ANSWER_TIMEOUT_S)
        connection.connect(str(path))
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return ProcessSample.from_json(b"".join(chunks))


def ask_every_process(directory: Path) -> tuple[list[ProcessSample], int]:
    """The samples of the command's live worker processes, and how many did not answer in time."""
    samples, unanswered = [], 0
    for path in sorted(directory.glob("*.sock")):
        try:
            samples.append(ask(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)  # its process is gone (killed before it could remove its socket)
        except (OSError, ValueError):
            unanswered += 1
    return samples, unanswered


def serve_worker_metrics() -> int:
    """Dramatiq forks this once per `dramatiq` command: serves the sum over its worker processes until stopped."""
    # Imported here, in the serving fork only: prometheus_client and the HTTP server stay out of every worker's start.
    from service.worker.metrics_server import serve

    return serve()
