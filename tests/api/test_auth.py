"""API_TOKEN: every route that changes state needs the bearer token; reads stay open."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.bootstrap import settings
from service.ops.jobs import Jobs
from service.web import app
from service.web.routes.hooks import hook_settings

TOKEN = "test-token-4c1f"


@pytest.fixture
def guarded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "api_token", TOKEN)
    monkeypatch.setattr(hook_settings, "hooks_signing_secret", "whsec_" + base64.b64encode(b"auth-test").decode())


def walk(routes: list[Any]) -> list[Any]:
    # Included routers keep their routes on `original_router` (FastAPI >= 0.16x), with the prefix already applied.
    found = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        found += walk(inner.routes) if inner is not None else [route]
    return found


def changing_routes() -> list[tuple[str, str]]:
    """Built from the app's own route table, so a new route that changes state cannot escape the check."""
    found = []
    for route in walk(app.routes):
        for method in sorted(getattr(route, "methods", None) or ()):
            if method not in ("GET", "HEAD", "OPTIONS"):
                path = str(route.path)
                for name, value in (("{actor}", "add"), ("{jobId}", "x"), ("{name}", "test")):
                    path = path.replace(name, value)
                found.append((method, path))
    return found


def test_the_route_table_has_the_routes_that_change_state() -> None:
    paths = {path for _, path in changing_routes()}
    assert {"/jobs/add", "/jobs/add/batch", "/jobs/x", "/jobs/x/retry", "/queues/test/purge", "/hooks/add"} <= paths


@pytest.mark.parametrize(("method", "path"), changing_routes())
def test_a_route_that_changes_state_refuses_a_missing_or_wrong_token(
    guarded: None, client: TestClient, jobs: Jobs, method: str, path: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = client.request(method, path, json={"a": 1, "b": 2}, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        if not path.startswith("/hooks/"):  # a hook's sender proves itself by its signature, not by our token
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert jobs.store.count() == 0


def test_the_right_token_is_let_in_and_reads_need_none(guarded: None, client: TestClient) -> None:
    response = client.post("/jobs/add", json={"a": 1, "b": 2}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 202
    assert client.get(f"/jobs/{response.json()['jobId']}").status_code == 200
    assert client.get("/jobs").status_code == 200
