"""GET /queues/{name}/dead pages a queue's dead letters without consuming them; POST .../dead/requeue and
.../dead/delete take them out (some or all), behind the token and the cross-site check."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from dramatiq.common import xq_name
from fastapi.testclient import TestClient

from service.bootstrap import redis_client, settings, store
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.store import keys
from tests.api.test_origin import CROSS_SITE
from tests.support.api_actors import QUEUE
from tests.support.graveyard import bury, bury_raw, dead_ids, empty, read_queue

TOKEN = "dead-letters-token"


@pytest.fixture
def held() -> Iterator[str]:
    empty(QUEUE)
    yield QUEUE
    empty(QUEUE)


def test_a_page_lists_dead_letters_oldest_first_with_why_and_when_and_leaves_them_in_place(
    client: TestClient, held: str
) -> None:
    ids = bury("held", [{"key": f"page-{i}"} for i in range(3)])
    secret = bury("held", [{"key": "postgres://app:hunter2@db/x", "password": "hunter2"}])  # type: ignore[list-item]
    bury_raw(held, b"\x00 not a dramatiq message")
    first = client.get(f"/queues/{held}/dead", params={"limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    assert (page["queue"], page["count"], page["offset"], page["next"], page["requeue"]) == (held, 5, 0, 2, None)
    assert [m["jobId"] for m in page["messages"]] == ids[:2]
    one = page["messages"][0]
    assert (one["actor"], one["reason"], one["state"]) == ("held", "PermanentError: broken", "failed")
    assert one["preview"] == '{"key": "page-0"}'
    assert one["deadAt"].startswith(time.strftime("%Y-%m-%d", time.gmtime()))
    rest = client.get(f"/queues/{held}/dead", params={"offset": 2, "limit": 50}).json()
    assert rest["next"] is None
    assert [m["jobId"] for m in rest["messages"][:2]] == [ids[2], secret[0]]
    assert "hunter2" not in str(rest["messages"][1]["preview"])
    garbage = rest["messages"][2]
    assert (garbage["actor"], garbage["reason"], garbage["state"]) == ("", "body is not a Dramatiq message", None)
    # Nothing was taken out, nor moved: the queue reads the same, in the same order, however often it is listed.
    assert dead_ids(held)[:4] == [*ids, *secret]
    assert client.get(f"/queues/{held}/dead").json()["count"] == 5
    assert client.get(f"/queues/{held}/dead", params={"offset": 60_000}).json()["messages"] == []


def test_requeue_of_chosen_jobs_sends_just_those_back_and_names_ids_it_did_not_find(
    client: TestClient, jobs: Jobs, held: str
) -> None:
    ids = bury("held", [{"key": f"one-{i}"} for i in range(3)])
    nothing = client.post(f"/queues/{held}/dead/requeue", json={"jobIds": []})
    assert (nothing.status_code, nothing.json()["requeued"], dead_ids(held)) == (202, 0, ids)
    response = client.post(f"/queues/{held}/dead/requeue", json={"jobIds": [ids[1], "no-such-job"]})
    assert response.status_code == 202, response.text
    assert response.json() == {
        "queue": held,
        "requeued": 1,
        "stale": 0,
        "kept": 0,
        "missing": ["no-such-job"],
        "requeue": None,
    }
    assert jobs.get(ids[1]).state is JobState.QUEUED
    assert [letter.job_id for letter in read_queue(held)] == [ids[1]]
    assert dead_ids(held) == [ids[0], ids[2]]  # the others stay, in their order


def test_a_dead_letter_without_a_record_is_published_again_as_it_was_and_recorded_queued(
    client: TestClient, jobs: Jobs, held: str
) -> None:
    [job_id] = bury("held", [{"key": "unrecorded"}], recorded=False)
    assert store.get(job_id) is None  # another service's job, or a pruned one: the store does not know it
    response = client.post(f"/queues/{held}/dead/requeue", json={"jobIds": [job_id]})
    assert response.status_code == 202, response.text
    assert (response.json()["requeued"], response.json()["missing"]) == (1, [])
    [letter] = read_queue(held)
    assert letter.message is not None
    assert (letter.message.message_id, letter.message.actor_name, letter.message.kwargs) == (
        job_id,
        "held",
        {"key": "unrecorded"},
    )
    assert not {"retries", "last_error"} & letter.message.options.keys()  # the dead attempt's are left behind
    assert jobs.get(job_id).state is JobState.QUEUED  # recorded once published, as a plain send is
    assert dead_ids(held) == []


def test_requeue_of_all_answers_at_once_and_its_progress_is_readable_until_done(
    client: TestClient, jobs: Jobs, held: str
) -> None:
    ids = bury("held", [{"key": f"all-{i}"} for i in range(40)])
    bury_raw(held, b"garbage")
    response = client.post(f"/queues/{held}/dead/requeue")
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["requeue"]["total"] == 41
    assert started["requeue"]["state"] in ("running", "done")
    deadline = time.monotonic() + 20
    while (progress := client.get(f"/queues/{held}/dead/requeue").json())["state"] == "running":
        assert time.monotonic() < deadline, progress
        time.sleep(0.05)
    assert (progress["state"], progress["requeued"], progress["kept"], progress["error"]) == ("done", 40, 1, None)
    assert sorted(letter.job_id for letter in read_queue(held)) == sorted(ids)
    assert all(jobs.get(job_id).state is JobState.QUEUED for job_id in ids)
    assert client.get(f"/queues/{held}/dead").json()["count"] == 1  # the garbage cannot run: it stays dead
    assert client.get(f"/queues/{held}/dead").json()["requeue"]["state"] == "done"


def test_a_second_requeue_of_all_while_one_runs_is_refused_with_409(client: TestClient, held: str) -> None:
    redis_client.set(keys.lock(f"dead-requeue:{held}"), "elsewhere", px=5000)
    response = client.post(f"/queues/{held}/dead/requeue")
    assert response.status_code == 409
    assert response.json() == {"detail": f"a requeue of the dead letters of {held} is running already"}


def test_delete_removes_chosen_dead_letters_or_all_and_leaves_the_records_failed(
    client: TestClient, jobs: Jobs, held: str
) -> None:
    ids = bury("held", [{"key": f"gone-{i}"} for i in range(4)])
    one = client.post(f"/queues/{held}/dead/delete", json={"jobIds": [ids[2], "no-such-job"]})
    assert one.status_code == 202, one.text
    assert one.json() == {"queue": held, "deleted": 1, "missing": ["no-such-job"]}
    assert dead_ids(held) == [ids[0], ids[1], ids[3]]
    everything = client.post(f"/queues/{held}/dead/delete")
    assert (everything.status_code, everything.json()) == (202, {"queue": held, "deleted": 3, "missing": []})
    assert dead_ids(held) == []
    assert read_queue(held) == []  # nothing was requeued on the way
    assert all(jobs.get(job_id).state is JobState.FAILED for job_id in ids)


def test_the_dead_letter_routes_answer_404_for_an_unknown_queue(client: TestClient) -> None:
    for method, path in (
        ("GET", "/queues/nowhere/dead"),
        ("GET", "/queues/nowhere/dead/requeue"),
        ("POST", "/queues/nowhere/dead/requeue"),
        ("POST", "/queues/nowhere/dead/delete"),
    ):
        response = client.request(method, path)
        assert (response.status_code, response.json()) == (404, {"detail": "Unknown queue: nowhere"}), path


def test_requeue_and_delete_refuse_a_missing_or_wrong_token_and_take_the_right_one(
    client: TestClient, held: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "api_token", TOKEN)
    ids = bury("held", [{"key": "guarded"}])
    for action in ("requeue", "delete"):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            for body in (None, {"jobIds": ids}):
                response = client.post(f"/queues/{held}/dead/{action}", json=body, headers=headers)
                assert response.status_code == 401, (action, headers, response.text)
    assert dead_ids(held) == ids
    assert client.get(f"/queues/{held}/dead").status_code == 200  # reading needs no token
    right = {"Authorization": f"Bearer {TOKEN}"}
    response = client.post(f"/queues/{held}/dead/delete", json={"jobIds": ids}, headers=right)
    assert (response.status_code, response.json()["deleted"]) == (202, 1)


def test_requeue_and_delete_sent_from_another_site_are_refused(server: str, held: str) -> None:
    ids = bury("held", [{"key": "cross-site"}])
    for action in ("requeue", "delete"):
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            response = httpx.post(f"{server}/queues/{held}/dead/{action}", json={"jobIds": ids}, headers=headers)
            assert (response.status_code, response.json()) == (403, CROSS_SITE), (action, headers)
    assert dead_ids(held) == ids
    assert xq_name(held).endswith(".XQ")
