"""The HTTP face of the service, `uvicorn service.web:app`: the JSON API (`routes/`), the dashboard (`dashboard/`)
and `/metrics`.

May import `service.ops`, `service.domain`, the foundation and the composition root (`service.bootstrap`), never
the store or RabbitMQ directly.
"""

from service.bootstrap import check_redis, services
from service.web.app import app

# Once per web process, as uvicorn imports it: every job is declared and the service layer built now, so a job that
# cannot be declared (a bad schedule) stops the process at its start rather than at its first request.
services()
check_redis("web")

__all__ = ["app"]
