"""The API app with the operating tests' jobs declared, for a real uvicorn: `uvicorn tests.support.ops_app:app`."""

from __future__ import annotations

from service.web import app
from tests.support import ops_actors, test_actors

__all__ = ["app", "ops_actors", "test_actors"]
