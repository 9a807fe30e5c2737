"""The API app with the test-only jobs declared, for a real uvicorn: `uvicorn tests.support.api_app:app`."""

from __future__ import annotations

from service.web import app
from tests.support import api_actors, test_actors

__all__ = ["api_actors", "app", "test_actors"]
