"""Publishes Dramatiq messages for the API, the CLI and the dead-letter requeue: confirmed one by one, or a whole batch
in one transaction."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import pika
from dramatiq.common import current_millis, dq_name, q_name
from dramatiq.middleware import Middleware

from service.rabbit.link import RabbitLink, routing_key

logger = logging.getLogger(__name__)


class EnqueueRecorder(Middleware):
    """A middleware whose `after_enqueue` writes the job's record (service/worker/middleware/status.py). A sender that
    wrote the record itself before publishing asks the Publisher to leave this hook out."""


class Publisher:
    """Does what `broker.enqueue` does, but through a RabbitLink, so a missing broker costs seconds, not minutes; and
    a batch costs one round trip, not one each. The enqueue hooks run, except the recorder's (EnqueueRecorder) for a
    message whose sender recorded it first (service.ops.jobs writes each job's record before publishing it, so that a
    store that cannot take the record stops the publish instead of being logged and swallowed by Dramatiq's
    emit_after)."""

    def __init__(self, link: RabbitLink) -> None:
        self.link = link
        self.broker = link.broker

    def publish(
        self, message: dramatiq.Message[Any], *, delay_ms: int | None = None, recorded: bool = True
    ) -> dramatiq.Message[Any]:
        """Returns once RabbitMQ has confirmed the message. Raises BrokerUnreachable. `recorded=False`: the sender
        wrote no record, so the recorder writes it after the publish, as `broker.enqueue` would have."""
        message = self._delayed(message, delay_ms)

        def send(link: RabbitLink) -> None:
            link.ensure_queue(q_name(message.queue_name))
            self.broker.emit_before("enqueue", message, delay_ms)
            # mandatory: an unroutable message (queue deleted meanwhile) raises instead of vanishing.
            link.channel("confirm").basic_publish(
                exchange="",
                routing_key=routing_key(self.broker, message),
                body=message.encode(),
                properties=_properties(message),
                mandatory=True,
            )

        self.link.run(send)
        self._after_enqueue([message], delay_ms, recorded)
        return message

    def publish_batch(self, messages: list[dramatiq.Message[Any]], *, delay_ms: int | None = None) -> None:
        """All of them or none: one AMQP transaction, committed once (RabbitMQ answers after they are safe, as it
        does for confirms). Their records are written already. Raises BrokerUnreachable, in which case none was
        published."""
        messages = [self._delayed(message, delay_ms) for message in messages]

        def send(link: RabbitLink) -> None:
            for queue in {q_name(m.queue_name) for m in messages}:
                link.ensure_queue(queue)
            channel = link.channel("tx")
            for message in messages:
                self.broker.emit_before("enqueue", message, delay_ms)
                channel.basic_publish(
                    exchange="",
                    routing_key=routing_key(self.broker, message),
                    body=message.encode(),
                    properties=_properties(message),
                )
            channel.tx_commit()

        self.link.run(send)
        self._after_enqueue(messages, delay_ms, recorded=True)

    def _after_enqueue(self, messages: list[dramatiq.Message[Any]], delay_ms: int | None, recorded: bool) -> None:
        # As emit_after does (reverse order, failures logged and swallowed), without the recorder when the sender
        # recorded the messages itself (see the class).
        for middleware in reversed(self.broker.middleware):
            if recorded and isinstance(middleware, EnqueueRecorder):
                continue
            try:
                for message in messages:
                    middleware.after_enqueue(self.broker, message, delay_ms)  # type: ignore[arg-type]
            except Exception:
                logger.critical("Unexpected failure in after_enqueue of %r.", middleware, exc_info=True)

    @staticmethod
    def _delayed(message: dramatiq.Message[Any], delay_ms: int | None) -> dramatiq.Message[Any]:
        if not delay_ms:
            return message
        # Dramatiq's own convention: the delay queue, and the time it is due in the "eta" option.
        return message.copy(queue_name=dq_name(message.queue_name), options={"eta": current_millis() + delay_ms})


def _properties(message: dramatiq.Message[Any]) -> pika.BasicProperties:
    return pika.BasicProperties(delivery_mode=2, priority=message.options.get("broker_priority"))
