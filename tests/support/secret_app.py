"""The API app with the secret-leaking test job declared, for a real uvicorn: `uvicorn tests.support.secret_app:app`."""

from __future__ import annotations

from service.web import app
from tests.support import secret_actors

__all__ = ["app", "secret_actors"]
