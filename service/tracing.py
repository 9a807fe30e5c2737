"""OpenTelemetry traces across the API and the workers: the W3C trace context travels in each message's options.

Off unless the standard OTEL_* variables ask for it (service.settings.Settings.tracing_exporter): then no SDK is
loaded, and every function here returns at its first line.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

from service.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

#: The message options that carry the sender's trace context, as W3C's HTTP headers of the same names do.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: The context of the attempt that published this retry: the next attempt's span links to it.
PREVIOUS_ATTEMPT = "trace_previous"

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-[0-9a-f]{2}$")
_NO_TRACE = "0" * 32

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_lock = threading.Lock()


def is_on() -> bool:
    return _tracer is not None


def provider() -> TracerProvider | None:
    return _provider


def tracer() -> Tracer:
    assert _tracer is not None, "tracing is off"
    return _tracer


def configure(settings: Settings) -> None:
    """Build the SDK's tracer provider when the OTEL_* variables ask for traces; otherwise do nothing at all."""
    exporter_name = settings.tracing_exporter
    if exporter_name is None:
        return
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        use(existing)  # another service importing `actors` set its own up: its spans and ours go the same way
        return
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.otel_service_name or "jobservice"}))
    if exporter_name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise SystemExit(
                "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install 'jobservice[otlp]'"
            ) from None
        # Batched: a collector that is slow or away delays no job; spans past the queue's size are dropped.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=_otlp_endpoint(settings))))
    elif exporter_name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        from service.tracing_file import JsonLinesExporter

        # Written as each span ends, so a test reads a span as soon as its attempt is over.
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(settings.traces_file)))
    # Also the global provider, so spans that actor code opens with opentelemetry's API become children of the
    # attempt that runs it (and are exported with it).
    trace.set_tracer_provider(provider)
    use(provider)


def _otlp_endpoint(settings: Settings) -> str | None:
    """As the exporter reads the variables, except that an empty one (compose passes them on empty) counts as unset."""
    if settings.otel_exporter_otlp_traces_endpoint:
        return settings.otel_exporter_otlp_traces_endpoint
    if settings.otel_exporter_otlp_endpoint:
        return settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    return None  # the exporter's default, http://localhost:4318/v1/traces


def use(provider: TracerProvider | None) -> None:
    """Trace through this provider from now on (None: off). Tests give one with the SDK's in-memory exporter."""
    global _tracer, _provider
    with _lock:
        _provider = provider
        _tracer = provider.get_tracer("jobservice") if provider is not None else None


def flush(timeout_ms: int = 2000) -> None:
    """Export the spans still queued (a stopping worker); bounded, so a collector that is away cannot hold a stop."""
    if _provider is not None:
        _provider.force_flush(timeout_ms)


def current_options() -> dict[str, str]:
    """The current span's context as message options: empty when tracing is off or no span is current."""
    if _tracer is None:
        return {}
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier


def parent_of(options: dict[str, Any]) -> Any:
    """The OpenTelemetry context a message's options carry (an empty one when they carry none)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {k: options[k] for k in (TRACEPARENT, TRACESTATE) if isinstance(options.get(k), str)}
    return TraceContextTextMapPropagator().extract(carrier)


def trace_id_of(options: dict[str, Any]) -> str | None:
    """The trace id in a message's `traceparent` option, when it holds a valid one (any sender can publish)."""
    value = options.get(TRACEPARENT)
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value)
    if match is None or match["trace"] == _NO_TRACE:
        return None
    return match["trace"]


def current_trace_id() -> str | None:
    """The trace id of the current span, as 32 hex digits; None when off or outside a span."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def traceparent_of(span: Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
