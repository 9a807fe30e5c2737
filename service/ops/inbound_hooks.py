"""Inbound hooks: an actor takes them only when its @job says hooks=True, and one webhook-id triggers one actor.

A Standard Webhooks signature covers the id, the timestamp and the body, not the URL: without these two rules a hook
captured on its way to one actor could be replayed, still validly signed, to any other within the 5-minute window."""

from __future__ import annotations

from typing import Any

from service.ops.jobs import Enqueued, Jobs
from service.ops.unavailable import store_call
from service.store.hook_ids import HookIds

#: As long as an Idempotency-Key is kept: a sender retrying the same id for a day still finds the same actor.
HOOK_ID_TTL_S = 86_400


class HooksNotAccepted(LookupError):
    """The actor exists but its @job does not say hooks=True."""


class HookIdReused(Exception):
    """This webhook-id was sent to another actor first."""

    def __init__(self, webhook_id: str, owner: str) -> None:
        super().__init__(webhook_id, owner)
        self.webhook_id = webhook_id
        self.owner = owner


class InboundHooks:
    def __init__(self, jobs: Jobs, ids: HookIds) -> None:
        self.jobs = jobs
        self.ids = ids

    def check_actor(self, actor_name: str) -> None:
        """Raises UnknownActor, or HooksNotAccepted: before the signature is even read."""
        if not self.jobs.actor(actor_name).accepts_hooks:
            raise HooksNotAccepted(actor_name)

    def enqueue(self, actor_name: str, webhook_id: str, payload: dict[str, Any]) -> Enqueued:
        """For a request whose signature was checked. The same id again for the same actor enqueues nothing new."""
        self.check_actor(actor_name)
        owner = store_call(lambda: self.ids.claim(webhook_id, actor_name))
        if owner != actor_name:
            raise HookIdReused(webhook_id, owner)
        return self.jobs.enqueue(actor_name, payload, idempotency_key=f"hook:{webhook_id}")
