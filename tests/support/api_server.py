"""A real `uvicorn` serving the API with the test-only jobs, in this run's vhost and Redis DB, as a context."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.web import WebProcess, free_port

__all__ = ["api_server", "free_port"]


@contextmanager
def api_server(timeout_s: float = 30) -> Iterator[str]:
    """Yields the base URL; stops the server afterwards. Quiet: no access log, warnings and worse only."""
    web = WebProcess(extra_args=["--log-level", "warning", "--no-access-log"]).start(timeout_s)
    try:
        yield web.url
    finally:
        web.stop(15)
