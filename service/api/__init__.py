"""The HTTP face of the service: `uvicorn service.api:app`."""

from service.api.app import app
from service.broker import redis_client
from service.redis_config import warn_if_unsafe

warn_if_unsafe(redis_client, "web")  # once per web process, as uvicorn imports it

__all__ = ["app"]
