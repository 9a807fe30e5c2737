"""What keeping a job's own log lines costs: per job that logs nothing, and per logged line.

End to end: jobs drained by a real `dramatiq` command (2 processes x 5 threads, as test_worker_throughput.py) with
capture on (the default) and off (JOB_LOG_LINES=0), in alternating order; the CPU per job of the workers, their
parent, RabbitMQ and Redis together is compared. In process: the time one `logger.info` takes on the job's thread
with and without the capture handler, and the writer thread's time per line (format, redact, one pipeline).

    make bench   # or: .venv/bin/python -m pytest tests/benchmarks/test_job_log_costs.py -s -o addopts="" -q
"""

from __future__ import annotations

import io
import logging
import os
import statistics
import time

import redis

from service import logs
from service.bootstrap import build_log_store, settings
from service.domain.context import JobContext, current_job
from service.worker.job_log_capture import JobLogCapture
from tests.benchmarks.draining import JOBS, Drain, drain, fill

ROUNDS = int(os.environ.get("BENCH_LOG_ROUNDS", "2"))
LINES = 10  #: lines a chatty job logs
MODULE = "tests.benchmarks.bench_log_actors"


def test_what_a_jobs_own_log_lines_cost_end_to_end() -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    variants = {
        ("quiet", "on"): (0, {}),
        ("quiet", "off"): (0, {"JOB_LOG_LINES": "0"}),
        ("chatty", "on"): (LINES, {}),
        ("chatty", "off"): (LINES, {"JOB_LOG_LINES": "0"}),
    }
    results: dict[tuple[str, str], list[Drain]] = {key: [] for key in variants}
    for n in range(ROUNDS):
        order = list(variants.items())
        for (kind, capture), (lines, env) in order if n % 2 == 0 else reversed(order):
            counter = f"bench:logs:{n}:{kind}:{capture}"
            fill(MODULE, "log_lines", f"counter='{counter}', lines={lines}", env)
            results[(kind, capture)].append(drain(client, counter, MODULE, "bench-logs", env))

    def cpu(key: tuple[str, str], field: str = "machine_ms") -> float:
        return float(statistics.median(getattr(d, field) for d in results[key]))

    def workers(key: tuple[str, str]) -> float:
        return cpu(key, "worker_ms")

    def rate(key: tuple[str, str]) -> float:
        return float(statistics.median(d.rate for d in results[key]))

    print(f"\njob log lines, {JOBS} jobs x {ROUNDS} rounds, 2 processes x 5 threads (medians)")
    for key in variants:
        print(
            f"  {key[0]:6s} capture {key[1]:3s}: {rate(key):6.0f} jobs/s, CPU ms/job: workers {workers(key):.3f}, "
            f"machine {cpu(key):.3f} (spread between rounds {spread(results[key]):.3f})"
        )
    quiet = (("quiet", "on"), ("quiet", "off"))
    chatty = (("chatty", "on"), ("chatty", "off"))
    print(
        f"  per job that logs nothing: workers {workers(quiet[0]) - workers(quiet[1]):+.3f} CPU ms, machine "
        f"{cpu(quiet[0]) - cpu(quiet[1]):+.3f} CPU ms\n"
        f"  per logged line: workers {(workers(chatty[0]) - workers(chatty[1])) * 1000 / LINES:+.1f} CPU us, machine "
        f"(Redis included) {(cpu(chatty[0]) - cpu(chatty[1])) * 1000 / LINES:+.1f} CPU us\n"
        "  (the machine figure includes RabbitMQ's and Redis's CPU, which other users of those servers also spend)"
    )
    assert all(d.rate > 0 for drains in results.values() for d in drains)


def spread(drains: list[Drain]) -> float:
    values = [d.worker_ms for d in drains]
    return max(values) - min(values)


def test_what_one_logged_line_costs_the_jobs_thread_and_the_writer() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    process_log = logging.StreamHandler(io.StringIO())  # the process log, formatted as in production
    process_log.setFormatter(logs.JsonFormatter())
    process_log.addFilter(logs.JobContextFilter())
    capture = JobLogCapture(
        build_log_store(settings, redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)),
        keep=settings.job_log_lines,
        line_chars=settings.job_log_line_chars,
        flush_s=3600,  # flushed by hand below
    )
    bench = logging.getLogger("bench.lines")
    count = 20_000
    try:
        root.handlers[:] = [process_log]
        root.setLevel(logging.INFO)

        def per_line(job_id: str | None) -> float:
            token = current_job.set(JobContext(job_id, "bench", "q", 1) if job_id else None)
            try:
                started = time.perf_counter()
                for n in range(count):
                    bench.info("processed item %d of %d", n, count)
                return (time.perf_counter() - started) / count * 1e6
            finally:
                current_job.reset(token)

        # Alternating rounds, the fastest of each kept: on a shared machine other load only ever adds time.
        timings: dict[str, list[float]] = {"without": [], "with": [], "no job": []}
        for i in range(5):
            root.handlers[:] = [process_log]
            timings["without"].append(per_line(f"bench-without-{i}"))
            root.addHandler(capture)
            timings["with"].append(per_line(f"bench-with-{i % 3}"))
            timings["no job"].append(per_line(None))
        without, with_capture, no_job = (min(timings[k]) for k in ("without", "with", "no job"))
        record = bench.makeRecord("bench.lines", logging.INFO, __file__, 1, "processed item %d of %d", (1, 2), None)
        token = current_job.set(JobContext("bench-handle", "bench", "q", 1))
        try:
            started = time.perf_counter()
            for _ in range(count):
                capture.handle(record)
            handle = (time.perf_counter() - started) / count * 1e6
        finally:
            current_job.reset(token)
        started = time.perf_counter()
        capture.flush()
        written = capture.stats.written
        writer = (time.perf_counter() - started) / max(written, 1) * 1e6
        started = time.perf_counter()
        for _ in range(count):
            capture.job_ended("a-job-that-logged-nothing")
        ended = (time.perf_counter() - started) / count * 1e9
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    print(
        f"\none logger.info on the job's thread, process log included: {without:.1f} us without the capture, "
        f"{with_capture:.1f} us with it ({with_capture - without:+.1f} us; the capture's handle() alone "
        f"{handle:.2f} us); outside a job {no_job:.1f} us (fastest of 5 rounds of {count})\n"
        f"writer thread per line (format, redact, pipeline RPUSH+LTRIM+EXPIRE, {written} lines in 4 jobs): "
        f"{writer:.1f} us\n"
        f"per job that logs nothing, on its thread: job_ended() {ended:.0f} ns"
    )
    assert written == min(count, settings.job_log_lines) * 4
