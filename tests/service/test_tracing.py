"""Traces across services: an HTTP request's trace context reaches every attempt of its job through a real web process
and a real worker (each retry a child of the request, linked to the attempt before), a job sent by a traced caller or
by a job carries its sender's context, and the job page and `jobs show` show the trace id. Off, no SDK is set up.

The web and worker processes export their spans with the test-support exporter (OTEL_TRACES_EXPORTER=jsonl, one JSON
line per finished span in TRACES_FILE); the test's own client spans go to the SDK's in-memory exporter."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import ValidationError

from service import tracing
from service.bootstrap import redis_client
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.settings import Settings
from tests.support import trace_actors
from tests.support.cli import run_cli
from tests.support.web import ROOT, WebProcess
from tests.support.workers import WorkerProcess

Span = dict[str, Any]
#: A secret of the worker process that its failing job puts in its error: spans must carry it redacted.
WORKER_SECRET = "tok-trace-secret-7f3a"


@dataclass
class Traced:
    web: WebProcess
    web_spans: Path
    worker_spans: Path


def traced_env(path: Path, name: str) -> dict[str, str]:
    return {"OTEL_TRACES_EXPORTER": "jsonl", "TRACES_FILE": str(path), "OTEL_SERVICE_NAME": name}


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    folder = tmp_path_factory.mktemp("traces")
    web_spans, worker_spans = folder / "web.jsonl", folder / "worker.jsonl"
    worker = WorkerProcess(
        processes=1,
        threads=2,
        queues=[trace_actors.QUEUE],
        modules=["tests.support.trace_actors"],
        env={**traced_env(worker_spans, "jobs-worker"), "API_TOKEN": WORKER_SECRET},
    )
    web = WebProcess(
        env=traced_env(web_spans, "jobs-web"),
        app="tests.support.trace_app:app",
        extra_args=["--log-level", "warning", "--no-access-log"],
    )
    with worker, web:
        yield Traced(web, web_spans, worker_spans)


@pytest.fixture
def client_spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    tracing.use(None)


def read_spans(path: Path) -> list[Span]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(path: Path, wanted: Callable[[list[Span]], bool], timeout_s: float = 20) -> list[Span]:
    deadline = time.monotonic() + timeout_s
    while True:
        spans = read_spans(path)
        if wanted(spans):
            return spans
        assert time.monotonic() < deadline, f"spans never arrived in {path}: {spans}"
        time.sleep(0.05)


def attempts_of(job_id: str, spans: list[Span]) -> list[Span]:
    found = [s for s in spans if s["attributes"].get("job.id") == job_id]
    return sorted(found, key=lambda s: s["attributes"]["job.attempt"])


def hex_id(value: int, digits: int) -> str:
    return f"0x{value:0{digits}x}"


def ids_of(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return hex_id(span.context.trace_id, 32), hex_id(span.context.span_id, 16)


def test_a_request_s_trace_reaches_each_attempt_of_its_job_and_each_retry_links_to_the_attempt_before(
    traced: Traced,
    jobs: Jobs,
    client_spans: tuple[TracerProvider, InMemorySpanExporter],
    capsys: pytest.CaptureFixture[str],
) -> None:
    provider, exporter = client_spans
    with provider.get_tracer("test-client").start_as_current_span("client call"):
        headers: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(headers)
        response = httpx.post(
            f"{traced.web.url}/jobs/traced_flaky", json={"key": "request", "failures": 1}, headers=headers, timeout=10
        )
    assert response.status_code == 202, response.text
    job_id = response.json()["jobId"]
    assert jobs.wait(job_id, timeout_s=20).state is JobState.COMPLETED

    (client,) = exporter.get_finished_spans()
    trace_id, client_span_id = ids_of(client)
    web_spans = wait_for(traced.web_spans, lambda spans: any(s["name"] == "POST /jobs/{actor}" for s in spans))
    (request,) = [s for s in web_spans if s["name"] == "POST /jobs/{actor}"]
    assert request["context"]["trace_id"] == trace_id
    assert request["parent_id"] == client_span_id  # the caller's traceparent header
    assert request["kind"] == "SpanKind.SERVER" and request["attributes"]["http.response.status_code"] == 202
    assert request["resource"]["attributes"]["service.name"] == "jobs-web"

    worker_spans = wait_for(traced.worker_spans, lambda spans: len(attempts_of(job_id, spans)) == 2)
    first, second = attempts_of(job_id, worker_spans)
    for attempt, number, outcome in ((first, 1, "retrying"), (second, 2, "completed")):
        assert attempt["name"] == "run traced_flaky" and attempt["kind"] == "SpanKind.CONSUMER"
        assert attempt["context"]["trace_id"] == trace_id
        assert attempt["parent_id"] == request["context"]["span_id"]  # retries share the request as parent
        assert (
            attempt["attributes"]
            | {
                "job.actor": "traced_flaky",
                "job.queue": trace_actors.QUEUE,
                "job.attempt": number,
                "job.outcome": outcome,
            }
            == attempt["attributes"]
        )
        assert attempt["resource"]["attributes"]["service.name"] == "jobs-worker"
    assert first["status"]["status_code"] == "ERROR"
    (error,) = first["events"]
    assert error["name"] == "exception" and error["attributes"]["exception.type"] == "RuntimeError"
    assert "planned failure 1, token ***" in error["attributes"]["exception.message"]
    assert "RuntimeError" in error["attributes"]["exception.stacktrace"]
    assert WORKER_SECRET not in traced.worker_spans.read_text()  # redacted as failedReason is
    assert first["links"] == []
    (link,) = second["links"]
    assert link["context"]["span_id"] == first["context"]["span_id"]  # linked to the attempt before
    assert link["context"]["trace_id"] == trace_id

    record = jobs.get(job_id)
    assert record.traceId == trace_id.removeprefix("0x")
    assert httpx.get(f"{traced.web.url}/jobs/{job_id}", timeout=10).json()["traceId"] == record.traceId
    page = httpx.get(f"{traced.web.url}/dashboard/jobs/{job_id}", timeout=10).text
    assert f'<code id="trace-id">{record.traceId}</code>' in page
    shown = run_cli(capsys, "show", job_id)
    assert shown.code == 0 and re.search(rf"trace\s+{record.traceId}", shown.out), shown.out


def test_a_job_sent_by_a_traced_caller_or_by_a_job_is_a_child_of_its_sender(
    traced: Traced, jobs: Jobs, client_spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = client_spans
    tracing.use(provider)  # this process as another service with tracing on, calling actor.send()
    with provider.get_tracer("other-service").start_as_current_span("caller"):
        job_id = trace_actors.traced_flaky.send(key="send", child=True).message_id
    assert jobs.wait(job_id, timeout_s=20).state is JobState.COMPLETED
    (caller,) = exporter.get_finished_spans()
    trace_id, caller_span_id = ids_of(caller)
    assert jobs.get(job_id).traceId == trace_id.removeprefix("0x")

    leaf_id = redis_client.get("test:traced-child:send")
    assert leaf_id is not None
    assert jobs.wait(leaf_id, timeout_s=20).state is JobState.COMPLETED
    spans = wait_for(traced.worker_spans, lambda s: bool(attempts_of(job_id, s) and attempts_of(leaf_id, s)))
    (parent,) = attempts_of(job_id, spans)
    (leaf,) = attempts_of(leaf_id, spans)
    assert parent["parent_id"] == caller_span_id and parent["context"]["trace_id"] == trace_id
    assert leaf["parent_id"] == parent["context"]["span_id"]  # sent while its sender's attempt ran
    assert leaf["context"]["trace_id"] == trace_id


def test_retries_of_a_job_from_an_untraced_sender_are_children_of_its_first_attempt(traced: Traced, jobs: Jobs) -> None:
    assert not tracing.is_on()
    job_id = jobs.enqueue("traced_flaky", {"key": "untraced", "failures": 2}).job_id
    assert jobs.wait(job_id, timeout_s=20).state is JobState.COMPLETED
    spans = wait_for(traced.worker_spans, lambda s: len(attempts_of(job_id, s)) == 3)
    first, second, third = attempts_of(job_id, spans)
    assert first["parent_id"] is None  # the root
    for later, before in ((second, first), (third, second)):
        assert later["parent_id"] == first["context"]["span_id"]
        assert later["links"][0]["context"]["span_id"] == before["context"]["span_id"]
    assert jobs.get(job_id).traceId == first["context"]["trace_id"].removeprefix("0x")  # written with "active"


def test_with_no_otel_variable_no_sdk_is_set_up_no_request_is_traced_and_messages_carry_no_trace() -> None:
    script = (
        "from opentelemetry import trace\n"
        "from service import tracing\n"
        "from service.web import app\n"
        "from service.bootstrap import broker\n"
        "from tests.support import test_actors\n"
        "message = test_actors.add.message(a=1, b=2)\n"
        "broker.emit_before('enqueue', message, None)\n"
        "assert 'traceparent' not in message.options, message.options\n"
        "assert not tracing.is_on() and tracing.provider() is None\n"
        "assert type(trace.get_tracer_provider()).__name__ == 'ProxyTracerProvider', 'an SDK provider was set'\n"
        "assert not app._native_telemetry.enabled()\n"
        "print('untraced')\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "untraced" in done.stdout, done.stderr[-3000:]


@pytest.mark.parametrize(
    ("variables", "exporter"),
    [
        ({}, None),
        ({"otel_service_name": "jobs"}, None),  # a name alone exports nothing
        ({"otel_exporter_otlp_endpoint": "http://collector:4318"}, "otlp"),
        ({"otel_exporter_otlp_traces_endpoint": "http://collector:4318/v1/traces"}, "otlp"),
        ({"otel_traces_exporter": "Console"}, "console"),
        ({"otel_traces_exporter": "none", "otel_exporter_otlp_endpoint": "http://collector:4318"}, None),
        ({"otel_sdk_disabled": "true", "otel_traces_exporter": "otlp"}, None),
        ({"otel_traces_exporter": "jsonl", "traces_file": "/tmp/spans.jsonl"}, "jsonl"),
    ],
)
def test_tracing_is_on_only_when_the_standard_variables_name_an_exporter_or_an_endpoint(
    variables: dict[str, str], exporter: str | None
) -> None:
    assert Settings.model_validate(variables).tracing_exporter == exporter


def test_an_unknown_exporter_or_a_jsonl_exporter_without_a_file_is_refused() -> None:
    with pytest.raises(ValidationError, match="otel_traces_exporter"):
        Settings.model_validate({"otel_traces_exporter": "zipkin"})
    with pytest.raises(ValidationError, match="TRACES_FILE"):
        Settings.model_validate({"otel_traces_exporter": "jsonl"})
