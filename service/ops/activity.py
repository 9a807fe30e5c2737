"""The service layer for what the workers have been doing: throughput per minute, the workers alive and what each
of their threads runs now, and the counts behind /metrics (jobs in each state, totals, run times)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.domain.figures import MinuteCount
from service.domain.states import FINAL_STATES, JobState
from service.ops.unavailable import store_call
from service.store.job_store import Counters, JobStore, KeyLoad


@dataclass(frozen=True)
class RunningJob:
    """One worker thread's job, from the worker's heartbeat and the job's record."""

    job_id: str
    actor: str
    queue: str
    thread: int  #: the thread's number in its process, from 1
    started_at: str  #: when this thread took the job (ISO 8601, UTC)
    elapsed_ms: int  #: from started_at to now
    progress: int
    progress_message: str | None


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
    running: list[RunningJob] = field(default_factory=list)


def _elapsed_ms(started_at: str, now: datetime) -> int:
    try:
        start = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    except ValueError:
        return 0
    return max(0, int((now - start).total_seconds() * 1000))


class Activity:
    """Reads only; the status middleware counts finished jobs and the heartbeat middleware writes the beats."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def counts(self, actors: list[str]) -> dict[tuple[str, JobState], int]:
        """How many jobs each actor has in each state."""
        return store_call(lambda: self.store.counts(actors))

    def counters(self) -> Counters:
        """Jobs created, states entered and attempt run times, as the store's scripts counted them."""
        return store_call(self.store.counters)

    def key_load(self) -> KeyLoad:
        """Keyed jobs waiting and running, per queue, actor and key (every key that has any)."""
        return store_call(self.store.key_load)

    def alive(self) -> int:
        """How many worker processes have a live heartbeat."""
        return len(store_call(self.store.workers))

    def throughput(self, minutes: int = 60) -> list[MinuteCount]:
        """Completed and failed per minute over the last `minutes`, oldest first."""
        return store_call(lambda: self.store.throughput(minutes))

    def workers(self) -> list[WorkerBeat]:
        """Worker processes whose heartbeat has not expired, by host then pid, each with what its threads run.

        A job whose record is already final is left out: its worker's next beat (within a fraction of a second)
        drops it, and the view should not show it running meanwhile."""
        beats = store_call(self.store.workers)
        entries = [(b, r) for b in beats for r in b.get("running", []) if isinstance(r, dict)]
        records = store_call(lambda: self.store.progress_of([str(r.get("jobId", "")) for _, r in entries]))
        now = datetime.now(UTC)
        running: dict[str, list[RunningJob]] = {}
        for (beat, entry), (state, progress, message) in zip(entries, records, strict=True):
            if state is not None and JobState(state) in FINAL_STATES:
                continue
            started = str(entry.get("startedAt", ""))
            running.setdefault(str(beat.get("id", "")), []).append(
                RunningJob(
                    job_id=str(entry.get("jobId", "")),
                    actor=str(entry.get("actor", "")),
                    queue=str(entry.get("queue", "")),
                    thread=int(entry.get("thread", 0)),
                    started_at=started,
                    elapsed_ms=_elapsed_ms(started, now),
                    progress=int(progress or 0),
                    progress_message=message or None,
                )
            )
        alive = [self._worker(b, running.get(str(b.get("id", "")), [])) for b in beats]
        return sorted(alive, key=lambda w: (w.host, w.pid))

    @staticmethod
    def _worker(beat: dict[str, Any], running: list[RunningJob]) -> WorkerBeat:
        return WorkerBeat(
            id=str(beat.get("id", "")),
            host=str(beat.get("host", "")),
            pid=int(beat.get("pid", 0)),
            threads=int(beat.get("threads", 0)),
            busy=int(beat.get("busy", 0)),
            queues=[str(q) for q in beat.get("queues", [])],
            started_at=str(beat.get("startedAt", "")),
            beat_at=str(beat.get("beatAt", "")),
            running=running,
        )
