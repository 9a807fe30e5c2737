"""What tracing costs per job: the tracing work of the enqueue path (the trace context into the message, the trace id
into the record) and of an attempt (its span opened, made current, its trace id read for "active", ended), timed
in this process with tracing off, and on with the SDK's in-memory exporter (synchronous, each span kept: an upper
bound) and behind the batch processor that production's OTLP exporter uses.

A round-trip through RabbitMQ and Redis costs a job ~1-2 ms of CPU (test_stack_costs.py); these figures are what
tracing adds to it.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import dramatiq
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service import tracing
from service.bootstrap import broker
from service.worker.middleware.tracing import AttemptSpans

JOBS = int(os.environ.get("BENCH_TRACING_JOBS", "20000"))
ROUNDS = 5


def one_job(spans: AttemptSpans, message: dramatiq.Message[None]) -> None:
    # The sender (inside the request's span when tracing is on), then the worker's attempt. The message is built
    # once outside: building one is not tracing's cost.
    options = tracing.current_options()
    tracing.trace_id_of(options)
    spans.before_process_message(broker, message)
    tracing.current_trace_id()
    spans.after_process_message(broker, message, result=None, exception=None)


def per_job_us(spans: AttemptSpans) -> float:
    options = tracing.current_options()
    message = dramatiq.Message(queue_name="bench", actor_name="bench_noop", args=(), kwargs={}, options=options)
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(JOBS):
            one_job(spans, message)
        rounds.append((time.perf_counter() - start) / JOBS * 1e6)
    return statistics.median(rounds)


def traced(make_processor: Callable[[InMemorySpanExporter], object]) -> tuple[float, int]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(make_processor(exporter))  # type: ignore[arg-type]
    tracing.use(provider)
    try:
        with provider.get_tracer("bench").start_as_current_span("request"):
            cost = per_job_us(AttemptSpans())
        provider.force_flush()
        return cost, len(exporter.get_finished_spans())
    finally:
        tracing.use(None)
        provider.shutdown()


def bare_span_us() -> float:
    """One SDK span started and ended, nothing else: the part of the cost that is OpenTelemetry's own."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    tracer = provider.get_tracer("bench")
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(JOBS):
            tracer.start_span("bare").end()
        rounds.append((time.perf_counter() - start) / JOBS * 1e6)
    provider.shutdown()
    return statistics.median(rounds)


def test_what_tracing_costs_per_job() -> None:
    assert not tracing.is_on()
    off = per_job_us(AttemptSpans())
    simple, simple_spans = traced(SimpleSpanProcessor)
    batch, _ = traced(lambda exporter: BatchSpanProcessor(exporter, max_queue_size=4 * JOBS))
    print(f"\ntracing cost per job (enqueue side + one attempt), {JOBS} jobs x {ROUNDS} rounds, median, this process:")
    print(f"  off (no OTEL_* variable)                         {off:8.2f} us")
    print(f"  on, in-memory exporter, simple processor         {simple:8.2f} us")
    print(f"  on, in-memory exporter, batch processor          {batch:8.2f} us")
    print(f"  (a bare SDK span, started and ended, alone       {bare_span_us():8.2f} us)")
    assert simple_spans == ROUNDS * JOBS + 1  # every attempt's span, and the request's
    assert off < simple
