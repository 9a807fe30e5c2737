"""The worker and scheduler entry point: `dramatiq service.actors` and `periodiq service.actors` set the broker up,
then declare every job in `actors`, as the API and the CLI do (service.bootstrap.declare_jobs)."""

from __future__ import annotations

import logging

from service.bootstrap import broker, declare_jobs, settings
from service.settings import public_view
from service.worker import scheduler

declare_jobs()
logging.getLogger("service.actors").info("configuration: %s", public_view(settings))

# Only takes effect in the `periodiq` program: see hook_into_periodiq for why this is the start-up hook.
scheduler.hook_into_periodiq()

__all__ = ["broker"]
