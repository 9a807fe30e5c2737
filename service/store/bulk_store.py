"""The Redis side of bulk runs (service/ops/bulk.py): each run's figures, the snapshot of the jobs it acts on, its
intents (the jobs of the batch it has begun acting on) and its lease, so that a run outlives the web process that
started it and exactly one process goes on with it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from service.domain.clock import now_iso
from service.store import keys, locks, scripts

#: A run's lease lapses this long after its holder's last step, and another web process takes the run over.
LEASE_MS = 15_000
#: A run's keys stay this long after its last write (a finished run's figures stay readable a day).
KEEP_S = 86_400
#: The snapshot is written this many ids to a command.
IDS_CHUNK = 1_000


def lease_key(bulk_id: str) -> str:
    return keys.lock(f"bulk:{bulk_id}")


class BulkStore:
    def __init__(self, client: redis.Redis, *, lease_ms: int = LEASE_MS, keep_s: int = KEEP_S) -> None:
        self.client = client
        self.lease_ms = lease_ms
        self.keep_s = keep_s
        self._step = client.register_script(scripts.text("bulk_step"))

    @staticmethod
    def new_token() -> str:
        """A lease's value: this process and a token of its own, "<host>:<pid>/<token>" (locks.holder_alive)."""
        return f"{locks.holder()}/{uuid.uuid4().hex[:12]}"

    def create(self, bulk_id: str, fields: Mapping[str, str | int], job_ids: Sequence[str], token: str) -> None:
        """The run, its snapshot and its lease (held by `token`), all at once or none."""
        pipe = self.client.pipeline(transaction=True)
        for start in range(0, len(job_ids), IDS_CHUNK):
            pipe.rpush(keys.bulk_ids(bulk_id), *job_ids[start : start + IDS_CHUNK])
        pipe.hset(keys.bulk(bulk_id), mapping=dict(fields))  # type: ignore[arg-type]
        for key in (keys.bulk(bulk_id), keys.bulk_ids(bulk_id)):
            pipe.expire(key, self.keep_s)
        pipe.zadd(keys.BULK_RUNNING, {bulk_id: int(fields.get("startedMs", 0))})
        pipe.set(lease_key(bulk_id), token, px=self.lease_ms)
        pipe.execute()

    def read(self, bulk_id: str) -> dict[str, str]:
        """The run's fields; empty when there is no such run (or it lapsed)."""
        return {str(k): str(v) for k, v in self.client.hgetall(keys.bulk(bulk_id)).items()}

    def running(self) -> list[str]:
        """Runs not finished, oldest first; a run whose keys lapsed is dropped from the set."""
        ids = [str(i) for i in self.client.zrange(keys.BULK_RUNNING, 0, -1)]
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for bulk_id in ids:
            pipe.exists(keys.bulk(bulk_id))
        alive = pipe.execute()
        gone = [bulk_id for bulk_id, there in zip(ids, alive, strict=True) if not there]
        if gone:
            self.client.zrem(keys.BULK_RUNNING, *gone)
        return [bulk_id for bulk_id, there in zip(ids, alive, strict=True) if there]

    def holder(self, bulk_id: str) -> str | None:
        value = self.client.get(lease_key(bulk_id))
        return str(value) if value is not None else None

    def take_over(self, bulk_id: str, token: str) -> bool:
        """The run's lease for `token`, if it lapsed or its holder on this machine is gone."""
        return locks.take_over(self.client, lease_key(bulk_id), token, self.lease_ms)

    def release(self, bulk_id: str, token: str) -> None:
        """Give the lease back (this process stops), so another takes the run over at once."""
        locks.release(self.client, lease_key(bulk_id), token)

    # -- the snapshot and the batch in hand ----------------------------------------------------------------------

    def ids(self, bulk_id: str, start: int = 0, count: int | None = None) -> list[str]:
        stop = -1 if count is None else start + count - 1
        return [str(i) for i in self.client.lrange(keys.bulk_ids(bulk_id), start, stop)]

    def intents(self, bulk_id: str, job_ids: Sequence[str]) -> list[str | None]:
        """For each job, the run it was at when this bulk run began acting on it, if it did and did not commit."""
        if not job_ids:
            return []
        values: Any = self.client.hmget(keys.bulk_intents(bulk_id), list(job_ids))
        return [None if v is None else str(v) for v in values]

    def handled(self, bulk_id: str) -> set[str]:
        """The jobs a requeue-dead run has handled already."""
        return {str(job_id) for job_id in self.client.hkeys(keys.bulk_handled(bulk_id))}

    # -- steps, each only while the lease is the caller's ------------------------------------------------------------

    def begin(self, bulk_id: str, token: str, intents: Mapping[str, int | str]) -> bool:
        flat = [str(part) for pair in intents.items() for part in pair]
        return self._take_step(bulk_id, token, "begin", *flat)

    def commit(self, bulk_id: str, token: str, jobs: int, acted: int, skipped: int) -> bool:
        return self._take_step(bulk_id, token, "commit", jobs, acted, skipped)

    def mark(self, bulk_id: str, token: str, job_id: str, acted: bool) -> bool:
        return self._take_step(bulk_id, token, "handled", job_id, "acted" if acted else "skipped")

    def finish(self, bulk_id: str, token: str, state: str, error: str = "") -> bool:
        return self._take_step(bulk_id, token, "finish", state, error, bulk_id)

    def renew(self, bulk_id: str, token: str) -> bool:
        return self._take_step(bulk_id, token, "renew")

    def _take_step(self, bulk_id: str, token: str, step: str, *args: str | int) -> bool:
        run_keys = [
            lease_key(bulk_id),
            keys.bulk(bulk_id),
            keys.bulk_intents(bulk_id),
            keys.bulk_handled(bulk_id),
            keys.bulk_ids(bulk_id),
            keys.BULK_RUNNING,
        ]
        head: list[str | int] = [token, self.lease_ms, self.keep_s, now_iso(), step]
        return bool(self._step(keys=run_keys, args=[*head, *args]))
