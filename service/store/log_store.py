"""The Redis side of a job's own log lines: appended in batches by the workers, read back with the job's state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis

from service.store import keys


@dataclass(frozen=True)
class StoredLines:
    state: str | None  #: the job's state, None when it has no record
    lines: list[str]  #: JSON lines, oldest first


class JobLogStore:
    """Each job's lines are a capped list next to its record; the retention prune deletes it with the record."""

    def __init__(self, client: redis.Redis, *, keep: int, ttl_s: int) -> None:
        self.client = client
        self.keep = keep
        #: A list written after its record was pruned (a flush racing the prune) would stay forever without this.
        self.ttl_s = ttl_s

    def append(self, batches: Mapping[str, Sequence[str]]) -> None:
        """Every job's new lines in one round trip: RPUSH, LTRIM to the last `keep`, and the time-to-live."""
        pipe = self.client.pipeline(transaction=False)
        for job_id, lines in batches.items():
            key = keys.job_logs(job_id)
            pipe.rpush(key, *lines)
            pipe.ltrim(key, -self.keep, -1)
            pipe.expire(key, self.ttl_s)
        pipe.execute()

    def tail(self, job_id: str, count: int) -> StoredLines:
        """The job's state and its last `count` lines (all of them with count 0), read together."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(keys.job(job_id), "state")
        pipe.lrange(keys.job_logs(job_id), -count if count else 0, -1)
        state, lines = pipe.execute()
        return StoredLines(None if state is None else str(state), [str(line) for line in lines])
