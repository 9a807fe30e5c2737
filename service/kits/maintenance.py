"""Keeping the job store tidy: retention, stale index entries, and jobs left `active` by workers that died."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from service.domain.clock import now_ms
from service.store.job_store import JobStore
from service.store.locks import exclusive

logger = logging.getLogger(__name__)

#: prune() removes at most 200 jobs per state and call; this bounds one cleanup's work per actor.
MAX_PRUNE_CALLS = 500


@dataclass
class Cleanup:
    """What one run did; also the job's result."""

    ran: bool = True
    pruned: int = 0
    staleIndexEntries: int = 0
    requeued: list[str] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _age_ms(iso: str) -> int:
    try:
        return now_ms() - int(datetime.fromisoformat(iso).timestamp() * 1000)
    except ValueError:
        return 0


def requeue_lost(store: JobStore, *, min_age_ms: int) -> list[str]:
    """Active jobs that no worker holds go back to queued; RabbitMQ redelivers their unacknowledged message.

    Never `failed`: the message is not lost, so the job will run again, and a final state could not be undone.
    A live worker renews its jobs' leases every third of the lease time, so a job unchanged for `min_age_ms` (the
    lease time) that has no lease has no live worker.
    """
    candidates = list(store.active_without_lease())
    requeued = [
        job_id
        for job_id, updated in candidates
        if _age_ms(updated) >= min_age_ms and store.requeue_lost(job_id, updated)
    ]
    for job_id in requeued:
        logger.warning("job %s was active on a worker that died; back to queued until RabbitMQ redelivers it", job_id)
    return requeued


def enforce_retention(store: JobStore, deadline: float) -> int:
    pruned = 0
    for actor in store.actors():
        for _ in range(MAX_PRUNE_CALLS):
            removed = store.prune(actor)
            pruned += removed
            if removed == 0 or time.monotonic() > deadline:
                break
    return pruned


def sweep_indexes(store: JobStore, deadline: float) -> int:
    removed = 0
    for index_key in store.index_keys():
        removed += store.sweep_index(index_key)
        if time.monotonic() > deadline:
            break
    return removed


def clean(store: JobStore, *, lease_ms: int, budget_s: float, lock_ttl_ms: int) -> Cleanup:
    """One pass of everything, by at most one process at a time. Each step is idempotent on its own."""
    with exclusive(store.client, "cleanup", lock_ttl_ms) as mine:
        if not mine:
            return Cleanup(ran=False, note="another cleanup is running; this one did nothing")
        deadline = time.monotonic() + budget_s
        result = Cleanup()
        result.requeued = requeue_lost(store, min_age_ms=lease_ms)
        result.pruned = enforce_retention(store, deadline)
        result.staleIndexEntries = sweep_indexes(store, deadline)
        if time.monotonic() > deadline:
            result.note = "stopped at its time budget; the next run continues"
        return result
