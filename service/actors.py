"""The worker and scheduler entry point: `dramatiq service.actors` and `periodiq service.actors` set the broker up,
then import every job in `actors`."""

from __future__ import annotations

import actors
from service import scheduler
from service.broker import broker

# Only takes effect in the `periodiq` program: see hook_into_periodiq for why this is the start-up hook.
scheduler.hook_into_periodiq()

__all__ = ["actors", "broker"]
