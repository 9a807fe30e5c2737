"""Hypothesis-generated bodies against every actor's POST /jobs route: refused with 4xx or accepted, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.bootstrap import services
from service.web import app

pytestmark = [pytest.mark.reliability]

ACTORS = services().jobs.actor_names()
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def api() -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def plausible(actor: str) -> st.SearchStrategy[dict[str, Any]]:
    """Objects keyed by the actor's own field names (so validation gets past "field required" to the values)."""
    fields = list(services().jobs.actor(actor).payload_model.model_fields)
    names = st.sampled_from(fields) | st.text(max_size=10) if fields else st.text(max_size=10)
    return st.dictionaries(names, JSON_VALUES, max_size=len(fields) + 2)


def test_nan_and_infinity_in_a_body_are_answered_with_valid_json(api: TestClient) -> None:
    for body in ("Infinity", "[NaN]", '{"to": -Infinity}'):
        response = api.post("/jobs/send_email", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, response.text
        assert "Infinity" not in response.text and "NaN" not in response.text


def test_there_are_actors_to_try() -> None:
    assert {"ping", "send_email"} <= set(ACTORS)


@pytest.mark.parametrize("actor", ACTORS)
def test_generated_payloads_get_202_or_a_4xx_naming_the_problem(api: TestClient, actor: str) -> None:
    @SETTINGS
    @given(body=plausible(actor) | JSON_VALUES)
    def check(body: Any) -> None:
        response = api.post(f"/jobs/{actor}", content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert response.status_code in (202, 413, 422), (body, response.status_code, response.text)
        if response.status_code == 422:
            assert response.json()["detail"], response.text

    check()


@SETTINGS
@given(raw=st.binary(max_size=200), query=st.dictionaries(st.sampled_from(["priority", "delay"]), st.text(max_size=8)))
def test_garbage_bytes_and_query_values_are_refused_with_a_4xx(
    api: TestClient, raw: bytes, query: dict[str, str]
) -> None:
    response = api.post("/jobs/ping", content=raw, params=query, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500 or response.status_code == 202, (raw, query, response.text)


@SETTINGS
@given(limit=st.integers(min_value=-(10**6), max_value=10**6) | st.text(max_size=6))
def test_the_list_limit_is_bounded(api: TestClient, limit: int | str) -> None:
    response = api.get("/jobs", params={"limit": limit})
    if isinstance(limit, int) and 1 <= limit <= 500:
        assert response.status_code == 200
        assert len(response.json()["jobs"]) <= limit
    else:
        assert response.status_code == 422, (limit, response.text)
