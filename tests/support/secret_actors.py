"""Test-only job that fails with secrets in its error, on a queue of its own ("secrets"): its failedReason,
lastError and traceback must be stored redacted, and its log lines too."""

from __future__ import annotations

import json
import os

from pydantic import BaseModel

import actors  # noqa: F401  (sets the broker up and declares the real jobs first)
from actors.email import settings as mail_settings
from service.settings import get_settings
from service.worker.typed_actor import job


class LeakPayload(BaseModel):
    key: str


@job(LeakPayload, queue="secrets", max_retries=1, retry_delays=[100])
def leak_secrets(payload: LeakPayload) -> None:
    """Fails as a careless client library would: quoting its settings raw, as JSON and in a URL."""
    secrets = {"smtp": mail_settings.smtp_password, "redis": get_settings().redis_password}
    url = f"https://svc:{os.environ.get('TEST_URL_PASSWORD', 'none')}@api.example.com/v1"
    raise RuntimeError(
        f"{payload.key}: upstream answered {json.dumps(secrets)} for {url}; raw: {' '.join(secrets.values())}"
    )
