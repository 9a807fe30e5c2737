"""Imported by a test's scheduler process: its publish of a tick of the actors named in STALL_PUBLISH_ACTORS never
returns, so the test can kill the process between the tick's claim and its publish (a crash at that moment)."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import dramatiq

from service.bootstrap import broker

STALLED = "publish stalled for the test"
_actors = {name for name in os.environ.get("STALL_PUBLISH_ACTORS", "").split(",") if name}
_enqueue = broker.enqueue


def _stalled_enqueue(message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
    if message.actor_name in _actors:
        logging.getLogger("tests").warning("%s: %s %s", STALLED, message.message_id, message.options["schedule_tick"])
        threading.Event().wait()  # until the test kills the process
    return _enqueue(message, delay=delay)


if _actors:  # only in the process a test starts with the variable, never in the test process itself
    broker.enqueue = _stalled_enqueue  # type: ignore[method-assign]
