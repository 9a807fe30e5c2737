"""Redis's side of flow control per key (service/domain/flow_control.py): singleton claims and the latest send of a
debounced key. Each call is one round trip."""

from __future__ import annotations

from collections.abc import Sequence

from service.store import keys, scripts
from service.store.job_store import JobStore

#: (claim name "<actor>:<key>", job id)
Claim = tuple[str, str]


class FlowStore:
    def __init__(self, store: JobStore) -> None:
        self.client = store.client
        # Job-store scripts: they read the claiming job's record (live or final) and write its `singleton` field.
        self._claim = self.client.register_script(scripts.job_script("singleton_claim", store.events_maxlen))
        self._release = self.client.register_script(scripts.job_script("singleton_release", store.events_maxlen))
        self._note = self.client.register_script(scripts.text("debounce_note"))

    # -- singleton ------------------------------------------------------------------------------------------

    def claim(self, claims: Sequence[Claim], *, pending_ms: int) -> list[str | None]:
        """Take each claim for its job, in order; for each, None when the job holds it now, else the id of the live
        job that holds it (see take_singleton in lua/common.lua)."""
        if not claims:
            return []
        args: list[str | int] = [pending_ms]
        for name, job_id in claims:
            args += [name, job_id]
        holders = self._claim(keys=scripts.LAYOUT, args=args)
        return [str(holder) or None for holder in holders]

    def release(self, claims: Sequence[Claim]) -> None:
        """Free claims whose jobs were not enqueued after all, each only if its job still holds it."""
        if claims:
            self._release(keys=scripts.LAYOUT, args=[part for claim in claims for part in claim])

    # -- debounce -------------------------------------------------------------------------------------------

    def note_sends(self, sends: Sequence[tuple[str, str, str, int]], *, keep_ms: int) -> int:
        """Each (actor, key, job id, send time in µs) is its key's latest send, unless a later one is noted already;
        kept `keep_ms`. One round trip; returns how many were noted."""
        if not sends:
            return 0
        names = [keys.debounce_latest(actor, key) for actor, key, _, _ in sends]
        args: list[str | int] = [keep_ms]
        for _, _, job_id, sent_us in sends:
            args += [sent_us, job_id]
        return int(self._note(keys=names, args=args))

    def latest_send(self, actor: str, key: str) -> tuple[int, str] | None:
        """(send time in µs, job id) of the key's latest send noted, if any."""
        value = self.client.get(keys.debounce_latest(actor, key))
        if not value:
            return None
        sent, _, job_id = str(value).partition(":")
        return int(sent), job_id
