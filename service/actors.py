"""The worker and scheduler entry point: `dramatiq service.actors` and `periodiq service.actors` set the broker up,
then import every job in `actors`."""

from __future__ import annotations

import logging

import actors
from service.bootstrap import broker, settings
from service.settings import public_view
from service.worker import scheduler

logging.getLogger("service.actors").info("configuration: %s", public_view(settings))

# Only takes effect in the `periodiq` program: see hook_into_periodiq for why this is the start-up hook.
scheduler.hook_into_periodiq()

__all__ = ["actors", "broker"]
