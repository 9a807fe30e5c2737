"""Flow control per key as the service layer enqueues (service/domain/flow_control.py).

- singleton: each message's claim is taken before its record is written; a message whose key another live job holds
  is not enqueued, and the caller gets that job's id (answered like an Idempotency-Key's duplicate). A claim whose
  enqueue then fails is freed at once.
- debounce: each message is stamped with its send time and published delayed by the debounce time; only once
  RabbitMQ confirmed it is it noted as its key's latest send, so a failed publish never supersedes an older one.

The worker checks both again before a job starts (service/worker/middleware/singleton.py, debounce.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import dramatiq

from service.domain import flow_control, job_key
from service.domain.flow_control import FlowRules
from service.domain.states import JobState
from service.domain.typed_job import TypedJob
from service.ops.unavailable import store_call
from service.store.flow_store import Claim, FlowStore
from service.store.job_store import JobStore

logger = logging.getLogger(__name__)

Message = dramatiq.Message[Any]


class KeyRepeated(ValueError):
    """A batch for a singleton actor names one key twice: at most one job per key can be enqueued."""


def rules_of(actor: TypedJob) -> FlowRules:
    return flow_control.rules_of(actor.options)


def key_of(message: Message) -> str | None:
    key = message.options.get(job_key.OPTION)
    return None if key is None else str(key)


class EnqueueFlow:
    """One per service object (Jobs), built from its store."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.flow = FlowStore(store)

    # -- singleton ------------------------------------------------------------------------------------------

    def claims(self, rules: FlowRules, messages: Sequence[Message]) -> list[Claim | None]:
        """The claim each message must take (None: none, its actor is not singleton or it has no key). Raises
        KeyRepeated when two messages need the same one."""
        claims = [rules.claim_name(m.actor_name, key_of(m)) for m in messages]
        first: dict[str, int] = {}
        for i, name in enumerate(claims):
            if name is None:
                continue
            if name in first:
                raise KeyRepeated(
                    f"{messages[i].actor_name} is a singleton: one job per key, and items {first[name]} and {i} have "
                    f"the key {key_of(messages[i])!r}"
                )
            first[name] = i
        return [None if name is None else (name, m.message_id) for name, m in zip(claims, messages, strict=True)]

    def claim(self, claims: Sequence[Claim | None], messages: Sequence[Message]) -> list[str | None]:
        """Take the claims (one round trip); per message, None when it may be enqueued, else the id of the live job
        that holds its key. A message that took its claim carries it, so its record keeps it."""
        wanted = [(i, claim) for i, claim in enumerate(claims) if claim is not None]
        if not wanted:
            return [None] * len(messages)
        holders = store_call(
            lambda: self.flow.claim([claim for _, claim in wanted], pending_ms=flow_control.CLAIM_PENDING_MS)
        )
        found: list[str | None] = [None] * len(messages)
        for (i, claim), holder in zip(wanted, holders, strict=True):
            if holder is None:
                messages[i].options[flow_control.CLAIM] = claim[0]
            found[i] = holder
        return found

    def release(self, messages: Sequence[Message]) -> None:
        """Free the claims these messages took: their enqueue failed. Quietly: a claim left is stale in
        CLAIM_PENDING_MS anyway, since its job has no record."""
        claims = [(m.options[flow_control.CLAIM], m.message_id) for m in messages if m.options.get(flow_control.CLAIM)]
        with contextlib.suppress(Exception):
            self.flow.release(claims)

    def state_of(self, job_id: str) -> JobState:
        """The holder's state; queued while its record is still being written."""
        state = store_call(lambda: self.store.state_of(job_id))
        return JobState(state) if state else JobState.QUEUED

    # -- debounce -------------------------------------------------------------------------------------------

    def stamp(self, rules: FlowRules, message: Message, delay_ms: int | None) -> int | None:
        """The delay to publish `message` with: for a debounced job with a key, stamped with its send time, at least
        the debounce time."""
        if rules.debounce_ms is None or not rules.debounces(key_of(message)):
            return delay_ms
        message.options[flow_control.SENT_AT] = flow_control.send_time_us()
        return max(delay_ms or 0, rules.debounce_ms)

    def note(self, messages: Sequence[Message], delay_ms: int) -> None:
        """After RabbitMQ confirmed them: each stamped message is its key's latest send, unless a later one is. A
        failure is logged, not raised: the jobs are enqueued, and run; only older sends of their keys cannot know of
        them, and run too."""
        sends = [
            (m.actor_name, key, m.message_id, int(m.options[flow_control.SENT_AT]))
            for m in messages
            if flow_control.SENT_AT in m.options and (key := key_of(m)) is not None
        ]
        if not sends:
            return
        try:
            self.flow.note_sends(sends, keep_ms=delay_ms + flow_control.LATEST_KEPT_MS)
        except Exception as error:
            logger.warning("%d debounced send(s) not noted as their key's latest (%s): %s", len(sends), error,
                           " ".join(job_id for _, _, job_id, _ in sends[:20]))  # fmt: skip
