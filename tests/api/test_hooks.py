"""POST /hooks/{actor}: a Standard Webhooks signature is checked before anything is enqueued."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.web.routes.hooks import hook_settings
from tests.support.workers import WorkerProcess

SECRET = "whsec_" + base64.b64encode(b"api-test-signing-secret-0123456789").decode()


@pytest.fixture(autouse=True)
def signing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hook_settings, "hooks_signing_secret", SECRET)


def signed(body: bytes, message_id: str = "msg_1", at: datetime | None = None, secret: str = SECRET) -> dict[str, str]:
    at = at or datetime.now(tz=UTC)
    signature = Webhook(secret).sign(message_id, at, body.decode())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def test_a_signed_hook_enqueues_the_job_which_runs(client: TestClient, jobs: Jobs, worker: WorkerProcess) -> None:
    body = json.dumps({"a": 20, "b": 22}).encode()
    response = client.post("/hooks/add", content=body, headers=signed(body))
    assert response.status_code == 202, response.text
    job_id = response.json()["jobId"]
    assert response.headers["Location"] == f"/jobs/{job_id}"
    record = jobs.wait(job_id, timeout_s=15)
    assert (record.state, record.result) == (JobState.COMPLETED, 42)


def test_a_redelivered_hook_with_the_same_id_enqueues_nothing_new(
    client: TestClient, jobs: Jobs, worker: WorkerProcess
) -> None:
    body = json.dumps({"a": 1, "b": 2}).encode()
    first = client.post("/hooks/add", content=body, headers=signed(body, "msg_again"))
    again = client.post("/hooks/add", content=body, headers=signed(body, "msg_again"))
    assert first.json()["jobId"] == again.json()["jobId"]
    assert jobs.store.count() == 1
    # Run to its end here: the session's worker finishing it during the next test would record it there.
    assert jobs.wait(first.json()["jobId"], timeout_s=15).state == JobState.COMPLETED


def test_a_bad_signature_is_401_and_nothing_is_enqueued(client: TestClient, jobs: Jobs) -> None:
    body = json.dumps({"a": 1, "b": 2}).encode()
    other_secret = "whsec_" + base64.b64encode(b"somebody-else-entirely").decode()
    tampered = json.dumps({"a": 1000, "b": 2}).encode()
    for content, headers in (
        (body, signed(body, secret=other_secret)),
        (tampered, signed(body)),
        (body, {k: v for k, v in signed(body).items() if k != "webhook-signature"}),
        (body, {**signed(body), "webhook-signature": "garbage-without-a-comma"}),
        (body, {**signed(body), "webhook-timestamp": "not-a-number"}),
        (b"\xff\xfe", signed(body)),
    ):
        response = client.post("/hooks/add", content=content, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["detail"].startswith("Bad webhook signature")
    assert jobs.store.count() == 0, [(r.actor, r.state, r.data, r.createdAt) for r in jobs.list().jobs]


def test_a_stale_or_future_timestamp_is_401_even_with_a_good_signature(client: TestClient, jobs: Jobs) -> None:
    body = json.dumps({"a": 1, "b": 2}).encode()
    for skew in (timedelta(minutes=-6), timedelta(minutes=6)):
        response = client.post("/hooks/add", content=body, headers=signed(body, at=datetime.now(tz=UTC) + skew))
        assert response.status_code == 401
        assert "timestamp" in response.json()["detail"]
    assert jobs.store.count() == 0


def test_a_signed_hook_with_a_bad_payload_is_422_and_for_an_unknown_actor_404(client: TestClient) -> None:
    for body, status in ((b"[1, 2]", 422), (b"{not json", 422), (b'{"a": "x", "b": 1}', 422)):
        response = client.post("/hooks/add", content=body, headers=signed(body))
        assert response.status_code == status, body
        assert response.json()["detail"][0]["loc"][0] == "body"
    body = b"{}"
    assert client.post("/hooks/nobody", content=body, headers=signed(body)).status_code == 404


def test_hooks_are_off_with_503_when_no_secret_is_set(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hook_settings, "hooks_signing_secret", "")
    response = client.post("/hooks/add", json={"a": 1, "b": 2})
    assert response.status_code == 503
    assert "HOOKS_SIGNING_SECRET" in response.json()["detail"]


def test_a_hook_signed_for_one_actor_and_replayed_to_another_that_takes_hooks_is_refused_with_409(
    client: TestClient, jobs: Jobs, worker: WorkerProcess
) -> None:
    # The signature covers id, timestamp and body, not the actor in the path: the id must bind the actor.
    body = json.dumps({"a": 1, "b": 2}).encode()
    headers = signed(body, "msg_captured")
    first = client.post("/hooks/add", content=body, headers=headers)
    assert first.status_code == 202, first.text
    assert jobs.actor("ping").accepts_hooks  # the replay below reaches an actor that does take hooks
    replayed = client.post("/hooks/ping", content=body, headers=headers)
    assert (replayed.status_code, replayed.json()) == (
        409,
        {"detail": "This webhook-id was already sent to another actor"},
    )
    again = client.post("/hooks/add", content=body, headers=headers)  # the sender's own redelivery still works
    assert (again.status_code, again.json()["jobId"]) == (202, first.json()["jobId"])
    assert jobs.store.count() == 1
    assert jobs.wait(first.json()["jobId"], timeout_s=15).actor == "add"


def test_an_actor_without_hooks_true_refuses_every_hook_with_404(
    client: TestClient, jobs: Jobs, worker: WorkerProcess
) -> None:
    # The live finding: a captured `{}` hook for ping replayed to cleanup_jobs and generate_report.
    body = b"{}"
    headers = signed(body, "msg_ping")
    ping = client.post("/hooks/ping", content=body, headers=headers)
    assert ping.status_code == 202
    for actor in ("cleanup_jobs", "generate_report"):
        assert not jobs.actor(actor).accepts_hooks
        for attempt in (headers, signed(body, f"msg_fresh_{actor}")):
            response = client.post(f"/hooks/{actor}", content=body, headers=attempt)
            assert (response.status_code, response.json()) == (404, {"detail": f"Actor {actor} does not take hooks"})
    assert [record.actor for record in jobs.list().jobs] == ["ping"]
    assert jobs.wait(ping.json()["jobId"], timeout_s=15).state == JobState.COMPLETED


def test_a_webhook_id_longer_than_an_idempotency_key_is_422(client: TestClient, jobs: Jobs) -> None:
    body = json.dumps({"a": 1, "b": 2}).encode()
    response = client.post("/hooks/add", content=body, headers=signed(body, "m" * 201))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "webhook-id"]
    assert jobs.store.count() == 0
