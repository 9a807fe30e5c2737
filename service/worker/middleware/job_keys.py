"""A job's key for messages built elsewhere: a plain Dramatiq message (`broker.enqueue(Message(...))`, or one another
service sent without this package) did not go through @job's message building, so the key is taken from the actor's
key field here, as it is enqueued and again as it is delivered, before its record is written
(service/domain/job_key.py)."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.errors import ActorNotFound
from dramatiq.middleware import Middleware

from service.domain import job_key

logger = logging.getLogger(__name__)


class JobKeys(Middleware):
    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        self.before_process_message(broker, message)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        try:
            field = getattr(broker.get_actor(message.actor_name), "key_field", None)
        except ActorNotFound:
            field = None  # an actor this process does not declare: only a sender's key counts
        try:
            key = job_key.key_of(message.options, message.kwargs or {}, field)
        except job_key.InvalidKey as error:
            # The job still runs; it only has no key, so no per-key limit or flow control can hold it.
            logger.warning("job %s: its key is ignored (%s)", message.message_id, error)
            key = None
        if key is None:
            message.options.pop(job_key.OPTION, None)
        else:
            message.options[job_key.OPTION] = key
