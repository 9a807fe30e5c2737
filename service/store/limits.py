"""Redis's side of the limits (service/domain/limits.py): take every limit a job is under in one step, renew the
concurrency slots of running jobs, give them back. Each call is one round trip (lua/limits.lua)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from service.domain.limits import Kind
from service.store import keys, scripts


@dataclass(frozen=True)
class Claim:
    """One limit as one job meets it: its scope and name, its kind and count, and a slot's life or the window (ms)."""

    scope: str
    name: str
    kind: Kind
    count: int
    ms: int

    @property
    def key(self) -> str:
        return keys.limit(self.scope, self.name)


#: A concurrency slot held: (its set, the holder's member).
Slot = tuple[str, str]


class LimitStore:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._script = client.register_script(scripts.text("limits"))

    def take(self, claims: Sequence[Claim], member: str) -> list[int] | None:
        """Take every claim for `member`, or none: None when taken, else per claim 0 (free), -1 (no slot free) or the
        ms until its window has room."""
        args: list[str | int] = ["take", member]
        for claim in claims:
            args += ["c" if claim.kind is Kind.CONCURRENCY else "r", claim.count, claim.ms]
        answer = self._script(keys=[claim.key for claim in claims], args=args)
        return None if answer == 0 else [int(wait) for wait in answer]

    def renew(self, slots: Sequence[Slot], life_ms: int) -> None:
        """Each slot still held lapses `life_ms` from now."""
        if slots:
            self._script(keys=[key for key, _ in slots], args=["renew", life_ms, *(member for _, member in slots)])

    def release(self, slots: Sequence[Slot]) -> None:
        if slots:
            self._script(keys=[key for key, _ in slots], args=["release", *(member for _, member in slots)])
