"""Configuration: the contract's defaults, and a bad variable stops the process with one clear line."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys

import pytest
from pydantic_settings import BaseSettings

from service import logs
from service.kits.mail import MailSettings
from service.kits.webhooks import WebhookSettings
from service.settings import Settings, load_settings
from service.web.routes.hooks import HookSettings

CONTRACT_VARIABLES = {
    "RABBITMQ_URL", "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB", "JOB_CONCURRENCY",
    "JOB_MAX_RETRIES", "JOB_RETRY_DELAYS_MS", "JOB_TIME_LIMIT_MS", "JOB_RETENTION_COMPLETED_S",
    "JOB_RETENTION_COMPLETED_COUNT", "JOB_RETENTION_FAILED_S", "API_TOKEN", "MAX_PAYLOAD_BYTES", "LOG_LEVEL",
    "LOG_FORMAT", "RABBITMQ_QUEUE_TYPE",
}  # fmt: skip


def test_defaults_are_the_contracts(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CONTRACT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert s.rabbitmq_url == "amqp://guest:guest@localhost:5672/"
    assert s.rabbitmq_queue_type == "classic"
    assert s.redis_url == "redis://localhost:6379/0"
    assert (s.job_concurrency, s.job_max_retries, s.job_time_limit_ms) == (5, 3, 300_000)
    assert s.job_retry_delays_ms == [1000, 5000, 30000]
    assert (s.job_retention_completed_s, s.job_retention_completed_count) == (86_400, 1000)
    assert s.job_retention_failed_s == 604_800
    assert (s.api_token, s.max_payload_bytes, s.log_level, s.log_format) == ("", 262_144, "INFO", "json")


def test_every_contract_variable_is_a_setting() -> None:
    assert {name.upper() for name in Settings.model_fields} >= CONTRACT_VARIABLES


def test_redis_url_is_built_from_the_seeds_four_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_HOST", "cache.internal")
    monkeypatch.setenv("REDIS_PORT", "6380")
    monkeypatch.setenv("REDIS_PASSWORD", "p@ss word")
    monkeypatch.setenv("REDIS_DB", "4")
    assert Settings().redis_url == "redis://:p%40ss%20word@cache.internal:6380/4"


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("RABBITMQ_URL", "nonsense", "RABBITMQ_URL: Value error, must look like amqp://"),
        ("JOB_CONCURRENCY", "-1", "JOB_CONCURRENCY: Input should be greater than or equal to 1"),
        ("JOB_RETRY_DELAYS_MS", "1s,5s", "JOB_RETRY_DELAYS_MS: Value error, must be comma-separated milliseconds"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT: Input should be 'json' or 'console'"),
    ],
)
def test_a_malformed_variable_stops_the_worker_with_one_line_naming_it(name: str, value: str, complaint: str) -> None:
    env = {**os.environ, name: value}
    done = subprocess.run(
        [sys.executable, "-m", "dramatiq", "service.actors", "--processes", "1", "--threads", "1"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if "invalid configuration" in line]
    assert len(lines) == 1, done.stderr
    assert complaint in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("kind", "variable"),
    [
        (Settings, "API_TOKEN"),
        (MailSettings, "SMTP_PASSWORD"),
        (WebhookSettings, "WEBHOOK_SIGNING_SECRET"),
        (HookSettings, "HOOKS_SIGNING_SECRET"),
    ],
)
def test_a_settings_class_is_loaded_once_and_its_secrets_are_redacted_from_then_on(
    kind: type[BaseSettings], variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()  # a valid value for every one of them
    monkeypatch.setenv(variable, secret)
    assert logs.redact(f"said {secret}") == f"said {secret}"  # nothing registered it yet
    # A subclass of its own: loaded for the first time here, while the process keeps the class it loaded at start.
    fresh = type(f"Fresh{kind.__name__}", (kind,), {})
    loaded = load_settings(fresh)
    assert load_settings(fresh) is loaded
    assert logs.redact(f"said {secret}") == "said ***"
