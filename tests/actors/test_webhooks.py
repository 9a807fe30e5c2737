"""deliver_webhook against a real HTTP server in this process and real workers."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from actors.webhooks import deliver_webhook
from service.domain.errors import PermanentError
from service.domain.states import JobState
from service.kits import webhooks
from service.ops.jobs import Jobs
from service.web import app
from tests.actors.conftest import SIGNING_SECRET, PrivateLane
from tests.support.http_receiver import Receiver
from tests.support.workers import WorkerProcess

FAST_RETRIES = {"retry_delays": [200], "retry_backoff": "fixed"}


@pytest.fixture(scope="module")
def webhook_worker(lane: PrivateLane, job_env: dict[str, str]) -> Iterator[WorkerProcess]:
    env = {**job_env, "WEBHOOK_TIMEOUT_S": "1", "WEBHOOK_HOST_CONCURRENCY": "2"}
    with lane.worker(env, threads=8) as process:
        yield process


def test_a_webhook_is_posted_signed_per_standard_webhooks_with_the_job_id_as_webhook_id(
    jobs: Jobs, lane: PrivateLane, receiver: Receiver, webhook_worker: WorkerProcess
) -> None:
    job_id = lane.send(
        deliver_webhook,
        url=receiver.url("/ok/signed"),
        event="invoice.paid",
        body={"invoice": 42, "amount": "9.99"},
        headers={"X-Tenant": "acme"},
    )
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.COMPLETED, record.failedReason
    assert record.result["status"] == 200
    assert record.result["body"] == "thanks"
    assert 0 <= record.result["durationMs"] < 5000
    [request] = receiver.received("/ok/signed")
    assert request.headers["webhook-id"] == job_id
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-tenant"] == "acme"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    verified = Webhook(SIGNING_SECRET).verify(request.body, request.headers)
    assert verified["type"] == "invoice.paid"
    assert verified["data"] == {"invoice": 42, "amount": "9.99"}
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60


def test_a_5xx_is_retried_until_it_succeeds_with_the_same_webhook_id(
    jobs: Jobs, lane: PrivateLane, receiver: Receiver, webhook_worker: WorkerProcess
) -> None:
    url = receiver.url("/fail/twice/2")
    job_id = lane.send(deliver_webhook, url=url, event="e", body={}, options=FAST_RETRIES)
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.COMPLETED, record.failedReason
    assert record.attempts == 3
    errors = [h.error for h in record.history if h.state is JobState.DELAYED]
    assert errors == ["TemporaryWebhookError: HTTP 500: boom"] * 2
    assert [r.headers["webhook-id"] for r in receiver.received("/fail/twice/")] == [job_id] * 3


def test_a_503_with_retry_after_waits_as_long_as_it_says(
    jobs: Jobs, lane: PrivateLane, receiver: Receiver, webhook_worker: WorkerProcess
) -> None:
    job_id = lane.send(deliver_webhook, url=receiver.url("/retry-after/wait/2"), event="e", body={})
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.COMPLETED, record.failedReason
    assert record.attempts == 2
    first, second = receiver.received("/retry-after/wait/")
    assert second.at - first.at >= 1.9  # two seconds, as asked, not the actor's own backoff


def test_a_404_fails_at_once_with_the_status_in_the_reason(
    jobs: Jobs, lane: PrivateLane, receiver: Receiver, webhook_worker: WorkerProcess
) -> None:
    job_id = lane.send(deliver_webhook, url=receiver.url("/status/404"), event="e", body={}, options=FAST_RETRIES)
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.FAILED
    assert record.attempts == 1
    assert record.failedReason == "PermanentError: HTTP 404: status 404"


def test_a_redirect_is_not_followed_and_fails_at_once(
    jobs: Jobs, lane: PrivateLane, receiver: Receiver, webhook_worker: WorkerProcess
) -> None:
    job_id = lane.send(deliver_webhook, url=receiver.url("/status/302"), event="e", body={}, options=FAST_RETRIES)
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.FAILED
    assert record.attempts == 1
    assert "redirects are not followed" in (record.failedReason or "")


def test_a_timeout_is_retried_and_then_fails_naming_it(
    jobs: Jobs, lane: PrivateLane, receiver: Receiver, webhook_worker: WorkerProcess
) -> None:
    options = {**FAST_RETRIES, "max_retries": 1}
    job_id = lane.send(deliver_webhook, url=receiver.url("/slow/timeout/3"), event="e", body={}, options=options)
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.FAILED
    assert record.attempts == 2
    assert record.failedReason == "TemporaryWebhookError: timed out after 1 s"


def test_only_the_first_bytes_of_the_response_are_kept(
    jobs: Jobs, lane: PrivateLane, receiver: Receiver, webhook_worker: WorkerProcess
) -> None:
    job_id = lane.send(deliver_webhook, url=receiver.url("/big"), event="e", body={})
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.COMPLETED
    assert record.result["body"] == "x" * 1024


def test_one_slow_host_cannot_take_more_threads_than_its_concurrency_limit(
    jobs: Jobs, lane: PrivateLane, receiver: Receiver, webhook_worker: WorkerProcess
) -> None:
    slow = [lane.send(deliver_webhook, url=receiver.url(f"/slow/conc/0.6/{i}"), event="e", body={}) for i in range(6)]
    time.sleep(0.3)
    other = lane.send(deliver_webhook, url=receiver.url("/ok/other-host", host="localhost"), event="e", body={})
    other_record = jobs.wait(other, timeout_s=20)
    slow_records = [jobs.wait(job_id, timeout_s=30) for job_id in slow]
    assert all(r.state is JobState.COMPLETED for r in [other_record, *slow_records])
    assert all(r.attempts == 1 for r in slow_records), "waiting for a slot must not count as an attempt"
    assert receiver.peak[f"conc@127.0.0.1:{receiver.port}"] == 2  # the worker has 8 threads; the host gets 2
    # Six 0.6 s requests two at a time take about 1.8 s; the other host was served while they queued.
    last_slow = max(datetime.fromisoformat(r.finishedAt or "") for r in slow_records)
    assert datetime.fromisoformat(other_record.finishedAt or "") < last_slow


def test_a_wrong_payload_from_a_foreign_client_fails_without_retries_naming_the_fields(
    jobs: Jobs, lane: PrivateLane, webhook_worker: WorkerProcess
) -> None:
    job_id = lane.send_raw("deliver_webhook", "webhooks", {"url": "ftp://example.com/x", "event": "has space"})
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.FAILED
    assert record.attempts == 1
    reason = record.failedReason or ""
    assert reason.startswith("InvalidPayload: invalid payload:")
    assert "url: URL scheme should be 'http' or 'https'" in reason
    assert "event: String should match pattern" in reason
    assert "body: Field required" in reason


# -- service.kits.webhooks on its own -------------------------------------------------------------------------------


def deliverer(**overrides: object) -> webhooks.Deliverer:
    values: dict[str, object] = {"webhook_signing_secret": SIGNING_SECRET, "webhook_timeout_s": 2, **overrides}
    return webhooks.Deliverer(webhooks.WebhookSettings.model_validate(values))


@pytest.mark.parametrize("value", ["a\x0bb", "a\x0cb", "a\x85b", "a\u2028b", "caf\u00e9", "a\nb"])
def test_a_header_value_that_is_not_one_line_of_printable_ascii_is_422_at_enqueue(value: str) -> None:
    payload = {"url": "https://example.com/hook", "event": "e", "body": {}, "headers": {"X-Tag": value}}
    with TestClient(app) as client:
        response = client.post("/jobs/deliver_webhook", json=payload)
    assert response.status_code == 422, response.text
    problems = {tuple(item["loc"]): item["msg"] for item in response.json()["detail"]}
    assert "header 'X-Tag' must be a single line of printable ASCII" in problems[("body", "headers")]


def test_a_header_value_with_a_line_break_from_a_foreign_client_fails_at_once(
    jobs: Jobs, lane: PrivateLane, receiver: Receiver, webhook_worker: WorkerProcess
) -> None:
    url = receiver.url("/ok/vt-header")
    job_id = lane.send_raw(
        "deliver_webhook", "webhooks", {"url": url, "event": "e", "body": {}, "headers": {"X-Tag": "a\x0bb"}}
    )
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.FAILED and record.attempts == 1
    assert "header 'X-Tag' must be a single line" in (record.failedReason or "")
    assert receiver.received("/ok/vt-header") == []


def test_a_loopback_destination_is_refused_unless_private_ones_are_allowed(receiver: Receiver) -> None:
    guarded = deliverer(webhook_allow_private=False)
    url = receiver.url("/ok/ssrf")
    with pytest.raises(PermanentError, match=r"127\.0\.0\.1, a loopback address \(set WEBHOOK_ALLOW_PRIVATE=true"):
        guarded.deliver(webhook_id="w1", url=url, event="e", body={}, headers={})
    assert receiver.received("/ok/ssrf") == []
    allowed = deliverer(webhook_allow_private=True)
    assert allowed.deliver(webhook_id="w2", url=url, event="e", body={}, headers={}).status == 200


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1]:8080/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://100.64.0.1/hook", "non-public"),
        ("http://localhost/hook", "loopback"),
    ],
)
def test_private_loopback_and_link_local_addresses_are_refused(url: str, kind: str) -> None:
    with pytest.raises(PermanentError, match=f"a {kind} address"):
        webhooks.resolve(url, allow_private=False)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://[fec0::1]/hook", "site-local"),  # site-local: Python 3.11 calls it global
        ("http://[fec0:1:2:3::a]/hook", "site-local"),
        ("http://[2002:a9fe:a9fe::1]/latest/meta-data", "link-local"),  # 6to4 of 169.254.169.254
        ("http://[2002:7f00:1::]/hook", "loopback"),  # 6to4 of 127.0.0.1
        ("http://[2002:a00:1::1]/hook", "private"),  # 6to4 of 10.0.0.1
        ("http://[2002:c0a8:1::]/hook", "private"),  # 6to4 of 192.168.0.1
        ("http://[64:ff9b::a9fe:a9fe]/hook", "link-local"),  # NAT64 of 169.254.169.254
        ("http://[64:ff9b::127.0.0.1]/hook", "loopback"),  # NAT64 of 127.0.0.1
        ("http://[64:ff9b:1::a00:1]/hook", "non-public"),  # NAT64 local-use prefix
        ("http://[::ffff:169.254.169.254]/hook", "link-local"),  # IPv4-mapped
        ("http://[::ffff:10.0.0.1]/hook", "private"),
        ("http://[::127.0.0.1]/hook", "loopback"),  # IPv4-compatible
        ("http://[::ffff:0:a9fe:a9fe]/hook", "link-local"),  # IPv4-translated
    ],
)
def test_ipv6_forms_wrapping_a_private_ipv4_address_and_site_local_ones_are_refused(url: str, kind: str) -> None:
    with pytest.raises(PermanentError, match=f"a {kind} address"):
        webhooks.resolve(url, allow_private=False)


def test_a_public_address_passes_the_guard() -> None:
    assert webhooks.resolve("https://93.184.215.14/hook", allow_private=False) == ["93.184.215.14"]
    # The same public address through 6to4 and NAT64 passes too: only what they wrap decides.
    for wrapped in ("2002:5db8:d70e::1", "64:ff9b::5db8:d70e"):
        assert webhooks.resolve(f"https://[{wrapped}]/hook", allow_private=False) == [wrapped]


class _HostRecorder(BaseHTTPRequestHandler):
    hosts: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.hosts.append(self.headers.get("host", ""))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def test_an_ipv6_host_is_sent_in_brackets_in_the_host_header() -> None:
    try:
        server = _V6Server(("::1", 0), _HostRecorder)
    except OSError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("no IPv6 loopback on this machine")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        answer = deliverer(webhook_allow_private=True).deliver(
            webhook_id="w-v6", url=f"http://[::1]:{port}/v6", event="e", body={}, headers={}
        )
        assert answer.status == 200
        assert _HostRecorder.hosts == [f"[::1]:{port}"]
    finally:
        server.shutdown()
        server.server_close()
    assert webhooks.host_header_of("https://[2001:db8::1]/x") == "[2001:db8::1]"
    assert webhooks.host_header_of("https://example.com:8443/x") == "example.com:8443"


def test_without_a_signing_secret_nothing_is_sent_unsigned(receiver: Receiver) -> None:
    with pytest.raises(PermanentError, match="WEBHOOK_SIGNING_SECRET is not set"):
        deliverer(webhook_signing_secret="").deliver(
            webhook_id="w", url=receiver.url("/ok/unsigned"), event="e", body={}, headers={}
        )
    assert receiver.received("/ok/unsigned") == []


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert webhooks.retry_after_ms("7") == 7000
    assert webhooks.retry_after_ms("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30_000
    assert webhooks.retry_after_ms("soon") is None
    assert webhooks.retry_after_ms(None) is None


def test_the_body_follows_the_standard_webhooks_envelope() -> None:
    at = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert json.loads(webhooks.envelope("user.created", {"id": 1}, at)) == {
        "type": "user.created",
        "timestamp": "2026-01-01T12:00:00.000Z",
        "data": {"id": 1},
    }
