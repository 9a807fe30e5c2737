"""The service layer for what the workers have been doing: throughput per minute and the workers alive."""

from __future__ import annotations

from dataclasses import dataclass

from service.store import JobStore, MinuteCount
from service.unavailable import store_call


@dataclass(frozen=True)
class WorkerBeat:
    id: str
    host: str
    pid: int
    threads: int
    busy: int
    queues: list[str]
    started_at: str
    beat_at: str


class Activity:
    """Reads only; the status middleware counts finished jobs and the heartbeat middleware writes the beats."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def throughput(self, minutes: int = 60) -> list[MinuteCount]:
        """Completed and failed per minute over the last `minutes`, oldest first."""
        return store_call(lambda: self.store.throughput(minutes))

    def workers(self) -> list[WorkerBeat]:
        """Worker processes whose heartbeat has not expired, by host then pid."""
        beats = store_call(self.store.workers)
        alive = [
            WorkerBeat(
                id=str(b.get("id", "")),
                host=str(b.get("host", "")),
                pid=int(b.get("pid", 0)),
                threads=int(b.get("threads", 0)),
                busy=int(b.get("busy", 0)),
                queues=[str(q) for q in b.get("queues", [])],
                started_at=str(b.get("startedAt", "")),
                beat_at=str(b.get("beatAt", "")),
            )
            for b in beats
        ]
        return sorted(alive, key=lambda w: (w.host, w.pid))
