"""POST /hooks/{actor}: a Standard Webhooks signature is checked before anything is enqueued."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from service.api.routes.hooks import hook_settings
from service.jobs import Jobs
from service.states import JobState
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


def test_a_redelivered_hook_with_the_same_id_enqueues_nothing_new(client: TestClient, jobs: Jobs) -> None:
    body = json.dumps({"a": 1, "b": 2}).encode()
    first = client.post("/hooks/add", content=body, headers=signed(body, "msg_again"))
    again = client.post("/hooks/add", content=body, headers=signed(body, "msg_again"))
    assert first.json()["jobId"] == again.json()["jobId"]
    assert jobs.store.count() == 1


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
    assert jobs.store.count() == 0


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
