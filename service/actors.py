"""The worker entry point: `dramatiq service.actors` sets the broker up, then imports every job in `actors`."""

from __future__ import annotations

import actors
from service.broker import broker

__all__ = ["actors", "broker"]
