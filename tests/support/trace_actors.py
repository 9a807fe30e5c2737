"""Test-only jobs for the tracing tests, on a queue of their own (the shared test worker does not consume it)."""

from __future__ import annotations

from pydantic import BaseModel, Field

import actors  # noqa: F401  (sets the broker up first)
from service.bootstrap import redis_client
from service.settings import get_settings
from service.worker.typed_actor import job

QUEUE = "test-traces"


class TracedPayload(BaseModel):
    key: str
    failures: int = Field(0, ge=0)
    child: bool = False


@job(TracedPayload, queue=QUEUE, max_retries=3, retry_delays=[50])
def traced_flaky(payload: TracedPayload) -> int:
    """Fails `failures` times (naming the process's API_TOKEN, which must not reach a span), then succeeds; then
    sends `traced_leaf` when asked (its id kept for the test)."""
    runs = int(redis_client.incr(f"test:traced-runs:{payload.key}"))
    if runs <= payload.failures:
        raise RuntimeError(f"planned failure {runs}, token {get_settings().api_token}")
    if payload.child:
        leaf = traced_leaf.send(key=payload.key)
        redis_client.set(f"test:traced-child:{payload.key}", leaf.message_id)
    return runs


@job(TracedPayload, queue=QUEUE, max_retries=0)
def traced_leaf(payload: TracedPayload) -> str:
    return payload.key
