"""Publishes Dramatiq messages for the API and CLI: confirmed one by one, or a whole batch in one transaction."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import pika
from dramatiq.common import current_millis, dq_name

from service.rabbit.link import RabbitLink, routing_key
from service.worker.middleware.status import StatusMiddleware

logger = logging.getLogger(__name__)


class Publisher:
    """Does what `broker.enqueue` does, but through a RabbitLink, so a missing broker costs seconds, not minutes; and
    a batch costs one round trip, not one each. The enqueue hooks run, except the status middleware's: the caller
    (service.ops.jobs) writes each job's record before publishing it, so that a store that cannot take the record stops
    the publish instead of being logged and swallowed by Dramatiq's emit_after."""

    def __init__(self, link: RabbitLink) -> None:
        self.link = link
        self.broker = link.broker

    def publish(self, message: dramatiq.Message[Any], *, delay_ms: int | None = None) -> dramatiq.Message[Any]:
        """Returns once RabbitMQ has confirmed the message. Raises BrokerUnreachable."""
        message = self._delayed(message, delay_ms)

        def send(link: RabbitLink) -> None:
            link.ensure_queue(message.queue_name if not delay_ms else self._canonical(message))
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
        self._after_enqueue([message], delay_ms)
        return message

    def publish_batch(self, messages: list[dramatiq.Message[Any]]) -> None:
        """All of them or none: one AMQP transaction, committed once (RabbitMQ answers after they are safe, as it
        does for confirms). Raises BrokerUnreachable, in which case none was published."""

        def send(link: RabbitLink) -> None:
            for queue in {m.queue_name for m in messages}:
                link.ensure_queue(queue)
            channel = link.channel("tx")
            for message in messages:
                self.broker.emit_before("enqueue", message, None)
                channel.basic_publish(
                    exchange="",
                    routing_key=routing_key(self.broker, message),
                    body=message.encode(),
                    properties=_properties(message),
                )
            channel.tx_commit()

        self.link.run(send)
        self._after_enqueue(messages, None)

    def _after_enqueue(self, messages: list[dramatiq.Message[Any]], delay_ms: int | None) -> None:
        # As emit_after does (reverse order, failures logged and swallowed), without the recorder (see the class).
        for middleware in reversed(self.broker.middleware):
            if isinstance(middleware, StatusMiddleware):
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

    @staticmethod
    def _canonical(message: dramatiq.Message[Any]) -> str:
        name = message.queue_name
        return name[: -len(".DQ")] if name.endswith(".DQ") else name


def _properties(message: dramatiq.Message[Any]) -> pika.BasicProperties:
    return pika.BasicProperties(delivery_mode=2, priority=message.options.get("broker_priority"))
