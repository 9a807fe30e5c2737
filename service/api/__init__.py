"""The HTTP face of the service: `uvicorn service.api:app`."""

from service.api.app import app

__all__ = ["app"]
