"""At most once per job: remember that a side effect happened, so a redelivered message does not repeat it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from service.store import keys, locks

_SENDING = "sending"


@dataclass(frozen=True)
class Claim:
    """What a run of a job found before doing its side effect."""

    #: The recorded outcome when an earlier run already did it; None otherwise.
    done: dict[str, Any] | None
    #: True when another run holds the claim right now (it may be halfway through).
    busy: bool
    #: Milliseconds until that other run's claim lapses.
    busy_for_ms: int = 0


class Once:
    """`claim` before the side effect, `record` right after it. Keys expire after `keep_s`."""

    def __init__(self, client: redis.Redis, kind: str, *, claim_ms: int, keep_s: int = 7 * 86_400) -> None:
        self.client = client
        self.kind = kind
        self.claim_ms = claim_ms
        self.keep_s = keep_s

    def claim(self, job_id: str) -> Claim:
        key = keys.once(self.kind, job_id)
        # SET NX: of two runs of one job racing (a redelivery while the first still runs) only one goes ahead.
        if self.client.set(key, _SENDING, nx=True, px=self.claim_ms):
            return Claim(done=None, busy=False)
        pipe = self.client.pipeline(transaction=True)
        pipe.get(key)
        pipe.pttl(key)
        value, ttl = pipe.execute()
        if value is None:  # lapsed between the two calls
            return self.claim(job_id)
        if value == _SENDING:
            return Claim(done=None, busy=True, busy_for_ms=max(int(ttl), 0))
        return Claim(done=json.loads(value), busy=False)

    def record(self, job_id: str, outcome: dict[str, Any]) -> None:
        self.client.set(keys.once(self.kind, job_id), json.dumps(outcome), ex=self.keep_s)

    def release(self, job_id: str) -> None:
        """The side effect did not happen (the server refused it): a later run may try again."""
        locks.release(self.client, keys.once(self.kind, job_id), _SENDING)
