"""What a `dramatiq` command serves on WORKER_METRICS_PORT: busy threads, messages held in memory, memory and CPU,
summed over its processes and read when scraped; nothing is written while jobs run (counts are the store's)."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.bootstrap import broker
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.worker.metrics import WorkerMetrics, ask_every_process, metrics_dir
from tests.support import ops_actors
from tests.support.web import free_port
from tests.support.workers import WorkerProcess

Figures = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Figures:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


def scrape_until(port: int, ready: Callable[[Figures], bool], what: str, timeout_s: float = 20) -> Figures:
    deadline = time.monotonic() + timeout_s
    figures: Figures = {}
    while True:
        try:
            figures = scrape(port)
            if ready(figures):
                return figures
        except httpx.TransportError:
            pass  # the serving process starts once every worker process is up
        assert time.monotonic() < deadline, f"{what} never showed on the worker port: {figures}"
        time.sleep(0.1)


def busy(figures: Figures, queue: str) -> float:
    return figures.get(("jobs_worker_threads_busy", (("queue", queue),)), -1)


def delayed(figures: Figures, queue: str) -> float:
    return figures.get(("jobs_worker_messages_delayed", (("queue", queue),)), -1)


def listing(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in directory.iterdir()}


def test_the_worker_metrics_middleware_has_no_per_message_hook() -> None:
    hooks = {name for name in vars(WorkerMetrics) if name.startswith(("before_", "after_"))}
    assert hooks == {"after_worker_boot", "before_worker_shutdown"}  # once per process, never per message
    assert sum(isinstance(m, WorkerMetrics) for m in broker.middleware) == 1
    assert not any(type(m).__module__.startswith("dramatiq.middleware.prometheus") for m in broker.middleware)


def test_a_socket_left_by_a_killed_worker_process_is_removed_and_not_counted() -> None:
    directory = Path(tempfile.mkdtemp(prefix="wm-"))  # short: a Unix socket's path has a length limit
    left = directory / "12345.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:
        gone.bind(str(left))  # bound, never listening again: what a SIGKILLed process leaves
    assert left.exists()
    assert ask_every_process(directory) == ([], 0)
    assert not left.exists()
    directory.rmdir()


@pytest.mark.slow
def test_workers_serve_busy_threads_and_held_messages_read_when_scraped_with_no_write_per_job(jobs: Jobs) -> None:
    port = free_port()
    env = {"WORKER_METRICS_PORT": str(port), "WORKER_METRICS_HOST": "127.0.0.1"}
    assert ops_actors.ops_step.queue_name == "ops"
    broker.flush("ops")  # nothing an earlier test left runs alongside the counted jobs
    with WorkerProcess(processes=2, threads=2, queues=["ops"], modules=["tests.support.ops_actors"], env=env) as w:
        assert w.proc is not None
        idle = scrape_until(port, lambda f: f.get(("jobs_worker_processes", ())) == 2, "both worker processes")
        assert idle[("jobs_worker_threads", ())] == 4
        assert busy(idle, "ops") == 0
        assert idle[("jobs_worker_resident_memory_bytes", ())] > 10_000_000  # two Python processes
        assert idle[("jobs_worker_cpu_seconds_total", ())] > 0
        assert not any(name.startswith("dramatiq_") for name, _ in idle)
        directory = metrics_dir(w.proc.pid)
        before = listing(directory)
        sockets = {f"{pid}.sock" for pid in w.child_pids()} & set(before)  # children: two workers and the server
        assert len(sockets) == 2 and set(before) == sockets, before  # one socket per worker process, nothing else

        running = [jobs.enqueue("ops_step", {"key": "worker-busy", "seconds": 4}).job_id for _ in range(4)]
        deadline = time.monotonic() + 20
        while any(jobs.get(job_id).state is not JobState.ACTIVE for job_id in running):
            assert time.monotonic() < deadline, "the four jobs never ran at once"
            time.sleep(0.05)
        scrape_until(port, lambda f: busy(f, "ops") == 4, "four busy threads", timeout_s=3)
        later = jobs.enqueue("ops_step", {"key": "worker-held", "seconds": 0}, delay_ms=60_000).job_id
        scrape_until(port, lambda f: delayed(f, "ops") == 1, "the delayed message held in memory")

        quick = [jobs.enqueue("ops_step", {"key": "worker-quick", "seconds": 0}).job_id for _ in range(40)]
        for job_id in [*running, *quick]:
            assert jobs.wait(job_id, timeout_s=30).state is JobState.COMPLETED
        scrape_until(port, lambda f: busy(f, "ops") == 0, "threads idle again")
        # 44 jobs ran and were scraped: not one file in the command's directory was written or added.
        assert listing(directory) == before
        jobs.cancel(later)
    broker.flush("ops")


@pytest.mark.slow
def test_a_worker_process_that_cannot_answer_still_runs_jobs_and_is_left_out_of_the_sums(jobs: Jobs) -> None:
    # A temporary directory too long for a Unix socket's path: each worker process's bind fails.
    deep = Path(tempfile.mkdtemp(prefix="wm-")) / ("d" * 100)
    deep.mkdir()
    port = free_port()
    env = {"WORKER_METRICS_PORT": str(port), "WORKER_METRICS_HOST": "127.0.0.1", "TMPDIR": str(deep)}
    broker.flush("ops")
    with WorkerProcess(processes=1, threads=1, queues=["ops"], modules=["tests.support.ops_actors"], env=env) as w:
        assert "worker metrics: this process cannot answer" in w.output()
        job_id = jobs.enqueue("ops_step", {"key": "worker-unanswering", "seconds": 0}).job_id
        assert jobs.wait(job_id, timeout_s=30).state is JobState.COMPLETED
        figures = scrape_until(port, lambda f: ("jobs_worker_processes", ()) in f, "the serving process")
        assert figures[("jobs_worker_processes", ())] == 0
    broker.flush("ops")
    shutil.rmtree(deep.parent)
