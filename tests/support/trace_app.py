"""The API app with the tracing tests' jobs declared, for a real uvicorn: `uvicorn tests.support.trace_app:app`."""

from __future__ import annotations

from tests.support import trace_actors
from tests.support.api_app import app

__all__ = ["app", "trace_actors"]
