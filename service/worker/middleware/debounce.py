"""Actor option `debounce="5s"` (trailing): the job runs once, that long after the last send for its key, with the
last payload (service/domain/flow_control.py).

Every send is a job of its own, with its record, published delayed by the debounce time and stamped with its send
time (SENT_AT, in µs). Once RabbitMQ confirmed it, Redis notes it as the key's latest send
(`jobs:debounce:<actor>:<key>`), so a send whose publish failed never supersedes an older one. When a message comes
due, the worker compares, before the job starts: a message older than the latest ends `cancelled`, superseded, and
only the latest runs. A message without a send time (a plain Dramatiq client's, not delayed) is delayed here first,
as a send made when the message was. A job with no key is not held.

Costs, for a debounced job with a key: one round trip per send (the note) and one per start (the comparison).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, NoReturn

import dramatiq
import redis
from dramatiq.common import current_millis
from dramatiq.middleware import Middleware, SkipMessage

from service.domain import flow_control, job_key
from service.store.flow_store import FlowStore
from service.store.job_store import JobStore
from service.worker.middleware.singleton import rules_for
from service.worker.middleware.unstarted import cancel_unstarted

logger = logging.getLogger(__name__)


class Debounce(Middleware):
    def __init__(self, flow: FlowStore, store: JobStore, *, max_payload_bytes: int) -> None:
        self.flow = flow
        self.store = store
        self.max_payload_bytes = max_payload_bytes
        #: The message this thread stamped as it was sent, to note once RabbitMQ confirmed it (after_enqueue).
        self._sending = threading.local()

    @property
    def actor_options(self) -> set[str]:
        return {flow_control.DEBOUNCE}

    # -- sender side (`actor.send()`: TypedActor delays a debounced send with a key by the debounce time) ----------

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        if flow_control.SENT_AT in message.options:
            return  # stamped when first sent: a retry, a delayed message coming due
        rules = rules_for(broker, message.actor_name)
        if not rules.debounces(message.options.get(job_key.OPTION)) or (delay or 0) < (rules.debounce_ms or 0):
            return  # not delayed by the debounce time (a plain actor's send, a pipeline's step): the worker delays it
        message.options[flow_control.SENT_AT] = flow_control.send_time_us()
        self._sending.job_id = message.message_id

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        if getattr(self._sending, "job_id", None) != message.message_id:
            return
        self._sending.job_id = None
        try:
            self._note(message, delay or 0)
        except redis.RedisError as error:
            # The job is published: it runs, unless a later send supersedes it; only the older sends it should
            # supersede cannot know of it, and run too.
            logger.warning("job %s: debounced send not noted as its key's latest (%s)", message.message_id, error)

    # -- worker side ----------------------------------------------------------------------------------------

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        rules = rules_for(broker, message.actor_name)
        key = message.options.get(job_key.OPTION)
        if rules.debounce_ms is None or key is None:
            return
        # A Redis error leaves here on purpose: the job does not run unchecked (service/worker/hook_failures.py).
        sent = message.options.get(flow_control.SENT_AT)
        if sent is None:
            self._delay(broker, message, rules.debounce_ms)
        latest = self.flow.latest_send(message.actor_name, key)
        if latest is not None and latest > (int(sent), message.message_id):
            reason = flow_control.debounced_reason(latest[1])
            cancel_unstarted(self.store, message, reason, max_payload_bytes=self.max_payload_bytes)

    def _delay(self, broker: dramatiq.Broker, message: Any, debounce_ms: int) -> NoReturn:
        """A send nobody delayed: publish it again, stamped with its creation as its send time and due the debounce
        time after it, note it once confirmed, and let this delivery go."""
        sent_us = int(message.message_timestamp) * 1000
        wait = max(int(message.message_timestamp) + debounce_ms - current_millis(), 1)
        published = broker.enqueue(message.copy(options={flow_control.SENT_AT: sent_us}), delay=wait)
        self._note(published, wait)
        raise SkipMessage("debounce: delayed until the debounce time after its send")

    def _note(self, message: Any, delay_ms: int) -> None:
        key = message.options[job_key.OPTION]
        keep_ms = delay_ms + flow_control.LATEST_KEPT_MS
        sent = int(message.options[flow_control.SENT_AT])
        self.flow.note_sends([(message.actor_name, key, message.message_id, sent)], keep_ms=keep_ms)
