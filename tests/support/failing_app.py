"""The API app with one more route, which raises: what the web process logs on a 500 (`uvicorn
tests.support.failing_app:app`)."""

from __future__ import annotations

from tests.support.api_app import app

__all__ = ["app"]


@app.get("/test/raise")
def raise_an_error(note: str = "") -> None:
    raise RuntimeError(f"a bug, with a secret in its message: {note}")
