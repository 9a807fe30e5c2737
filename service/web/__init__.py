"""The HTTP face of the service, `uvicorn service.web:app`: the JSON API (`routes/`), the dashboard (`dashboard/`)
and `/metrics`.

May import `service.ops`, `service.domain`, the foundation and the composition root (`service.bootstrap`), never
the store or RabbitMQ directly.
"""

from service.bootstrap import redis_client
from service.store.redis_config import warn_if_unsafe
from service.web.app import app

warn_if_unsafe(redis_client, "web")  # once per web process, as uvicorn imports it

__all__ = ["app"]
