"""Actor option `singleton=True`: at most one job of the actor per key queued, delayed or running
(service/domain/flow_control.py).

The job that holds a key holds its claim in Redis (`jobs:singleton:<actor>:<key>`), freed by the script that writes
its final state. A sender through this broker (`actor.send()`) takes the claim before publishing and is refused with
SingletonTaken, the holder's id in it; the API takes it before writing the record (service/ops/flow.py). The worker
checks again before the job starts, which catches what no sender checked (a plain Dramatiq client, a claim taken
over as stale meanwhile): a job whose key another live job holds ends `cancelled` with the reason. A job with no key
is not held.

Costs one round trip per send and one per start of a singleton job with a key; nothing for other jobs.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import redis
from dramatiq.errors import ActorNotFound
from dramatiq.middleware import Middleware

from service.domain import flow_control, job_key
from service.domain.flow_control import FlowRules, FlowUnchecked, InvalidFlowOption, SingletonTaken
from service.store.flow_store import FlowStore
from service.store.job_store import JobStore
from service.worker.middleware.unstarted import cancel_unstarted

logger = logging.getLogger(__name__)


def rules_for(broker: dramatiq.Broker, actor_name: str) -> FlowRules:
    """The actor's flow control; none for an actor this process does not declare."""
    try:
        return flow_control.rules_of(broker.get_actor(actor_name).options)
    except ActorNotFound:
        return flow_control.NONE


class Singleton(Middleware):
    def __init__(self, flow: FlowStore, store: JobStore, *, max_payload_bytes: int) -> None:
        self.flow = flow
        self.store = store
        self.max_payload_bytes = max_payload_bytes

    @property
    def actor_options(self) -> set[str]:
        return {flow_control.SINGLETON}

    def before_declare_actor(self, broker: dramatiq.Broker, actor: dramatiq.Actor[Any, Any]) -> None:
        # The actor's flow control as a whole (debounce's option too): a bad value fails at import, naming the actor,
        # not at every message.
        try:
            flow_control.rules_of(actor.options)
        except InvalidFlowOption as error:
            raise InvalidFlowOption(f"{actor.actor_name}: {error}") from None

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        if message.options.get(flow_control.CLAIM):
            return  # claimed as it was first sent: a retry, a delayed message coming due, a deferral
        name = self._claim_name(broker, message)
        if name is None:
            return
        try:
            holder = self._take(name, message)
        except redis.RedisError as error:
            raise FlowUnchecked(f"singleton: the key's claim could not be checked ({error}); nothing sent") from None
        if holder is not None:
            raise SingletonTaken(message.actor_name, message.options[job_key.OPTION], holder)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        name = self._claim_name(broker, message)
        if name is None:
            return
        # A Redis error leaves here on purpose: the job does not run unchecked (service/worker/hook_failures.py).
        holder = self._take(name, message)
        if holder is not None:
            reason = flow_control.singleton_reason(holder, message.options[job_key.OPTION])
            cancel_unstarted(self.store, message, reason, max_payload_bytes=self.max_payload_bytes)

    def _claim_name(self, broker: dramatiq.Broker, message: Any) -> str | None:
        return rules_for(broker, message.actor_name).claim_name(message.actor_name, message.options.get(job_key.OPTION))

    def _take(self, name: str, message: Any) -> str | None:
        """None when the message's job holds the claim now (and the message says so), else the holder's id."""
        (holder,) = self.flow.claim([(name, message.message_id)], pending_ms=flow_control.CLAIM_PENDING_MS)
        if holder is None:
            message.options[flow_control.CLAIM] = name  # its record keeps it, so the job's end frees the claim
        return holder
