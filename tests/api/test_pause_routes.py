"""POST /queues/{name}/pause and /resume: the HTTP face of the pause flag that every worker obeys."""

from __future__ import annotations

from fastapi.testclient import TestClient


def paused(client: TestClient, name: str) -> bool:
    return bool({q["name"]: q for q in client.get("/queues").json()}[name]["paused"])


def test_a_queue_paused_over_http_reads_paused_until_it_is_resumed(client: TestClient) -> None:
    response = client.post("/queues/test/pause")
    assert (response.status_code, response.json()) == (202, {"queue": "test", "paused": True})
    assert paused(client, "test") and not paused(client, "default")
    response = client.post("/queues/test/resume")
    assert (response.status_code, response.json()) == (202, {"queue": "test", "paused": False})
    assert not paused(client, "test")


def test_pausing_or_resuming_an_unknown_queue_is_a_404_naming_it(client: TestClient) -> None:
    for action in ("pause", "resume"):
        response = client.post(f"/queues/no-such-queue/{action}")
        assert (response.status_code, response.json()) == (404, {"detail": "Unknown queue: no-such-queue"})
