"""A malformed job variable stops any process that loads the jobs, with one line naming it, exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic_settings import BaseSettings

from service.kits.mail import MailSettings
from service.kits.webhooks import WebhookSettings
from service.settings import ReportSettings, Settings, exit_on_invalid
from tests.support.workers import ROOT


def test_loading_the_jobs_with_a_malformed_variable_stops_the_process_with_one_line() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EMAIL_RATE_LIMIT": "fast"}
    done = subprocess.run(
        [sys.executable, "-c", "import actors"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "invalid configuration: EMAIL_RATE_LIMIT: Value error, rate limit 'fast' must look like 100/s, 30/m or 5/10s"
    ]


@pytest.mark.parametrize(
    ("settings", "variable", "value", "words"),
    [
        (MailSettings, "SMTP_PORT", "smtp", "SMTP_PORT: Input should be a valid integer"),
        (MailSettings, "EMAIL_FROM", "nobody", "EMAIL_FROM: value is not a valid email address"),
        (MailSettings, "SMTP_SSL", "maybe", "SMTP_SSL: Input should be a valid boolean"),
        (MailSettings, "SMTP_USERNAME", "me", "SMTP_PASSWORD is required when SMTP_USERNAME is set"),
        (WebhookSettings, "WEBHOOK_SIGNING_SECRET", "whsec_", "WEBHOOK_SIGNING_SECRET: Value error, must be whsec_"),
        (WebhookSettings, "WEBHOOK_TIMEOUT_S", "0", "WEBHOOK_TIMEOUT_S: Input should be greater than 0"),
        (WebhookSettings, "WEBHOOK_HOST_CONCURRENCY", "-1", "WEBHOOK_HOST_CONCURRENCY: Input should be greater than"),
        (WebhookSettings, "WEBHOOK_HOST_RATE_LIMIT", "lots", "WEBHOOK_HOST_RATE_LIMIT: Value error, rate limit"),
        (ReportSettings, "REPORT_RECIPIENTS", "boss@example.com,oops", "REPORT_RECIPIENTS: value is not a valid email"),
        (ReportSettings, "PUBLIC_BASE_URL", "example.com", "PUBLIC_BASE_URL: Value error, must start with http://"),
        (Settings, "JOB_LEASE_MS", "5", "JOB_LEASE_MS: Input should be greater than or equal to 1000"),
    ],
)
def test_each_malformed_job_variable_is_named_in_one_line(
    settings: type[BaseSettings],
    variable: str,
    value: str,
    words: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stopped:
        exit_on_invalid(settings)
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("invalid configuration: ")
    assert words in lines[0]
