"""The real API app in-process, its service layer wired through fault proxies instead of straight to the servers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from service.ops.jobs import Jobs
from service.web import app
from service.web.deps import provide_jobs


@contextmanager
def api_using(jobs: Jobs) -> Iterator[TestClient]:
    """A TestClient whose routes get `jobs` (e.g. built by harness.jobs_through) as their service layer."""
    app.dependency_overrides[provide_jobs] = lambda: jobs
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client
    finally:
        app.dependency_overrides.pop(provide_jobs, None)
