"""The API app with the test jobs and the bulk tests' job declared: `uvicorn tests.support.bulk_app:app`."""

from __future__ import annotations

from tests.support import bulk_actors
from tests.support.api_app import app

__all__ = ["app", "bulk_actors"]
