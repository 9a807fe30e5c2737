"""The Redis side of schedules: which ticks have been claimed, and each schedule's last tick, run and skips."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import redis

from service import keys


def _script(name: str) -> str:
    return (resources.files("service") / "lua" / f"{name}.lua").read_text()


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


class ScheduleStore:
    """Claims make each tick happen once across every scheduler; the records are what GET /schedules shows."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._record = client.register_script(_script("schedule_record"))
        self._release = client.register_script(_script("schedule_release"))

    def claim(self, actor: str, tick: str, owner: str, ttl_s: int) -> bool:
        """First caller wins (SET NX): only the winner may send, or skip, this tick."""
        return bool(self.client.set(keys.schedule_tick(actor, tick), owner, nx=True, ex=ttl_s))

    def claimed_by(self, actor: str, tick: str) -> str | None:
        value = self.client.get(keys.schedule_tick(actor, tick))
        return str(value) if value is not None else None

    def release(self, actor: str, tick: str, owner: str) -> None:
        self._release(keys=[keys.schedule_tick(actor, tick)], args=[owner])

    def record_run(self, actor: str, tick: datetime, job_id: str) -> None:
        self._record(keys=[keys.schedule(actor)], args=["run", _ms(tick), _iso(tick), job_id])

    def record_skipped(self, actor: str, newest: datetime, count: int) -> None:
        self._record(keys=[keys.schedule(actor)], args=["skipped", _ms(newest), _iso(newest), count])

    def state(self, actor: str) -> ScheduleState:
        fields: dict[str, str] = self.client.hgetall(keys.schedule(actor))  # type: ignore[assignment]
        return ScheduleState.from_redis(fields)

    def states(self, actors: list[str]) -> dict[str, ScheduleState]:
        pipe = self.client.pipeline(transaction=False)
        for actor in actors:
            pipe.hgetall(keys.schedule(actor))
        return {actor: ScheduleState.from_redis(raw) for actor, raw in zip(actors, pipe.execute(), strict=True)}
