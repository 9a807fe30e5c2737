"""deliver_webhook: POST a signed event to another service's URL, with per-host rate and concurrency limits."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from service.domain.context import current_job
from service.kits import webhooks
from service.settings import load_settings
from service.worker.typed_actor import job

logger = logging.getLogger(__name__)

settings = load_settings(webhooks.WebhookSettings)
deliverer = webhooks.Deliverer(settings)

#: Retry-After is honoured up to this long; a receiver asking for more is retried after this.
MAX_RETRY_AFTER_MS = 3_600_000


class WebhookPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(description="http or https destination")
    event: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$", description="e.g. invoice.paid")
    body: dict[str, Any] = Field(description="the event's data, a JSON object")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            lowered = name.lower()
            if lowered in webhooks.RESERVED_HEADERS or lowered.startswith("webhook-"):
                raise ValueError(f"header {name!r} is set by the delivery and cannot be given")
            if not name.isascii() or not name.replace("-", "").isalnum():
                raise ValueError(f"header name {name!r} must be letters, digits and dashes")
            if not all(char == "\t" or " " <= char <= "~" for char in text):
                # A line break would start a header of its own; anything else outside printable ASCII fails the
                # request itself, and did so on every one of the job's retries.
                raise ValueError(f"header {name!r} must be a single line of printable ASCII")
        return value


class WebhookResult(BaseModel):
    status: int
    durationMs: int
    body: str = Field(description="the first bytes of the response (WEBHOOK_RESPONSE_BYTES)")


def destination_host(message: Any) -> str:
    """Rate and concurrency limits are per destination host; the payload is not validated yet at that point."""
    url = (message.kwargs or {}).get("url")
    return webhooks.host_of(url) if isinstance(url, str) else "invalid"


@job(
    WebhookPayload,
    queue="webhooks",
    max_retries=10,
    retry_backoff="exponential",
    retry_delays=[5_000],
    max_backoff=3_600_000,
    time_limit=int(settings.webhook_timeout_s * 1000) * 3 + 10_000,
    rate_limit=settings.webhook_host_rate_limit,
    rate_limit_key=destination_host,
    concurrency_limit=settings.webhook_host_concurrency,
    concurrency_key=destination_host,
)
def deliver_webhook(payload: WebhookPayload) -> WebhookResult:
    """5xx, timeouts and network errors are retried with exponential backoff; 429/503 with Retry-After wait as
    asked; any other 4xx fails at once."""
    context = current_job.get()
    webhook_id = context.job_id if context else "manual"
    try:
        response = deliverer.deliver(
            webhook_id=webhook_id, url=str(payload.url), event=payload.event, body=payload.body, headers=payload.headers
        )
    except webhooks.RetryLater as later:
        raise dramatiq.Retry(str(later), delay=min(later.delay_ms, MAX_RETRY_AFTER_MS)) from None
    return WebhookResult(status=response.status, durationMs=response.duration_ms, body=response.body)
