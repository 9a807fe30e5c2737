"""The Redis side of schedules: which ticks have been claimed (and not yet published), and each schedule's last
tick, run and skips."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import redis

from service.store import keys, scripts


def _iso(instant: datetime) -> str:
    return instant.isoformat(timespec="seconds").replace("+00:00", "Z")


def _ms(instant: datetime) -> int:
    return int(instant.timestamp() * 1000)


@dataclass(frozen=True)
class ScheduleState:
    last_tick_ms: int | None = None
    last_tick_at: str | None = None  #: the newest tick this schedule sent or skipped
    last_run_at: str | None = None  #: the tick of the newest run
    last_job_id: str | None = None
    last_skipped_at: str | None = None
    skipped_ticks: int = 0

    @classmethod
    def from_redis(cls, fields: dict[str, str]) -> ScheduleState:
        return cls(
            last_tick_ms=int(fields["lastTickMs"]) if "lastTickMs" in fields else None,
            last_tick_at=fields.get("lastTickAt"),
            last_run_at=fields.get("lastRunAt"),
            last_job_id=fields.get("lastJobId"),
            last_skipped_at=fields.get("lastSkippedAt"),
            skipped_ticks=int(fields.get("skippedTicks", 0)),
        )


@dataclass(frozen=True)
class UnpublishedTick:
    """A tick claimed for publishing and not yet confirmed published: enough to publish it again, as the same job."""

    actor: str
    tick: str  #: the tick's label, e.g. "2025-03-30T02:30 Europe/Paris"
    tick_ms: int  #: the instant it is due
    job_id: str

    @property
    def note(self) -> str:
        """Its member in the sorted set: the same text from the same tick, in every process."""
        return json.dumps([self.actor, self.tick, self.tick_ms, self.job_id], separators=(",", ":"))

    @classmethod
    def from_note(cls, note: str) -> UnpublishedTick:
        actor, tick, tick_ms, job_id = json.loads(note)
        return cls(str(actor), str(tick), int(tick_ms), str(job_id))


class ScheduleStore:
    """Claims make each tick happen once across every scheduler; the records are what GET /schedules shows."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._record = client.register_script(scripts.text("schedule_record"))
        self._claim = client.register_script(scripts.text("schedule_claim"))
        self._adopt = client.register_script(scripts.text("schedule_adopt"))

    def claim(self, actor: str, tick: str, owner: str, ttl_s: int, publishing: UnpublishedTick | None = None) -> bool:
        """First caller wins (SET NX): only the winner may send, or skip, this tick. A tick claimed for `publishing`
        stays noted as unpublished until record_run() says it was published."""
        note = publishing.note if publishing else ""
        tick_keys = [keys.schedule_tick(actor, tick), keys.SCHEDULE_UNPUBLISHED]
        return bool(self._claim(keys=tick_keys, args=[owner, ttl_s, note]))

    def claimed_by(self, actor: str, tick: str) -> str | None:
        value = self.client.get(keys.schedule_tick(actor, tick))
        return str(value) if value is not None else None

    def unpublished(self) -> list[UnpublishedTick]:
        """Every tick claimed and not yet confirmed published, oldest claim first."""
        notes: list[str] = self.client.zrange(keys.SCHEDULE_UNPUBLISHED, 0, -1)  # type: ignore[assignment]
        return [UnpublishedTick.from_note(note) for note in notes]

    def adopt_unpublished(self, older_than_ms: int, limit: int = 100) -> list[UnpublishedTick]:
        """Ticks claimed longer ago than `older_than_ms` and still unpublished; each goes to one caller at a time."""
        notes = self._adopt(keys=[keys.SCHEDULE_UNPUBLISHED], args=[older_than_ms, limit])
        return [UnpublishedTick.from_note(str(note)) for note in notes]

    def record_run(self, actor: str, tick: datetime, job_id: str, published: UnpublishedTick | None = None) -> None:
        """The tick's message is confirmed published: the schedule's last run, and the tick no longer unpublished."""
        args: list[str | int] = ["run", _ms(tick), _iso(tick), job_id, published.note if published else ""]
        self._record(keys=[keys.schedule(actor), keys.SCHEDULE_UNPUBLISHED], args=args)

    def record_skipped(
        self, actor: str, newest: datetime, count: int, unpublished: UnpublishedTick | None = None
    ) -> None:
        args: list[str | int] = ["skipped", _ms(newest), _iso(newest), count, unpublished.note if unpublished else ""]
        self._record(keys=[keys.schedule(actor), keys.SCHEDULE_UNPUBLISHED], args=args)

    def state(self, actor: str) -> ScheduleState:
        fields: dict[str, str] = self.client.hgetall(keys.schedule(actor))  # type: ignore[assignment]
        return ScheduleState.from_redis(fields)

    def states(self, actors: list[str]) -> dict[str, ScheduleState]:
        pipe = self.client.pipeline(transaction=False)
        for actor in actors:
            pipe.hgetall(keys.schedule(actor))
        return {actor: ScheduleState.from_redis(raw) for actor, raw in zip(actors, pipe.execute(), strict=True)}
