"""Requests that change state are refused when a browser sends them from another site, and a request for a `Host`
this service does not answer to (DNS rebinding) is refused whatever it asks."""

from __future__ import annotations

import httpx

from service.ops.jobs import Jobs
from service.settings import Settings
from tests.support.records import put_record

CROSS_SITE = {"detail": "cross-site request refused: send it from this service's own pages"}


def test_a_post_from_another_origin_is_refused_with_403(server: str, jobs: Jobs) -> None:
    job_id = put_record()
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        response = httpx.delete(f"{server}/jobs/{job_id}", headers=headers, timeout=5)
        assert (response.status_code, response.json()) == (403, CROSS_SITE), headers
        assert response.headers["content-type"] == "application/json"
    assert jobs.get(job_id).state == "queued"


def test_a_post_from_the_dashboard_itself_or_from_a_service_without_origin_passes(server: str) -> None:
    own = server.removeprefix("http://")
    for headers in ({"Origin": f"http://{own}", "Sec-Fetch-Site": "same-origin"}, {}):
        response = httpx.post(f"{server}/jobs/add", json={"a": 1, "b": 2}, headers=headers, timeout=5)
        assert response.status_code == 202, (headers, response.text)
        assert set(response.json()) == {"jobId", "status"}


def test_reads_are_never_refused_whatever_their_origin(server: str) -> None:
    response = httpx.get(f"{server}/healthz", headers={"Origin": "https://evil.example"}, timeout=5)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_a_request_for_a_host_not_allowed_is_refused_with_400_even_from_its_own_pages(server: str, jobs: Jobs) -> None:
    # DNS rebinding: a page at http://evil.example:<port> whose name now resolves to this service. Its requests carry
    # Host and Origin of evil.example, so to the origin check they look same-site.
    port = server.rsplit(":", 1)[1]
    job_id = put_record()
    for host in (f"evil.example:{port}", "evil.example", "localhost.evil.example", "127.0.0.1.nip.io"):
        headers = {"Host": host, "Origin": f"http://{host}"}
        deleted = httpx.delete(f"{server}/jobs/{job_id}", headers=headers, timeout=5)
        read = httpx.get(f"{server}/jobs/{job_id}", headers=headers, timeout=5)
        for response in (deleted, read):
            assert (response.status_code, response.text) == (400, "Invalid host header"), host
    assert jobs.get(job_id).state == "queued"


def test_the_allowed_hosts_are_answered_with_or_without_a_port(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
        response = httpx.get(f"{server}/healthz", headers={"Host": host}, timeout=5)
        assert (response.status_code, response.json()) == (200, {"status": "ok"}), host


def test_allowed_hosts_default_to_loopback_and_take_ipv6_with_or_without_brackets() -> None:
    assert Settings.model_fields["allowed_hosts"].default == ["localhost", "127.0.0.1", "[::1]"]
    assert Settings(allowed_hosts="Web, ::1,[fe80::1],api.example.com").allowed_hosts == [  # type: ignore[arg-type]
        "web",
        "[::1]",
        "[fe80::1]",
        "api.example.com",
    ]
