"""The Redis job store: every job's state, progress, result and failure, with retention."""

from __future__ import annotations

import builtins
import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import redis
from redis.commands.core import Script

from service.domain.clock import iso_from_ms, now_ms
from service.domain.figures import MinuteCount
from service.domain.job_filter import JobFilter, parse_cursor
from service.domain.states import FINAL_STATES, JobState
from service.settings import Settings
from service.store import job_search, keys, scripts
from service.store.script_batcher import ScriptBatcher

if TYPE_CHECKING:
    from service.domain.records import JobRecord

#: EVENTS_STREAM_MAXLEN's default, read from the settings rather than typed again.
DEFAULT_EVENTS_MAXLEN: int = Settings.model_fields["events_stream_maxlen"].default
#: REDIS_WAIT_TIMEOUT_MS's default, likewise.
DEFAULT_REPLICA_WAIT_MS: int = Settings.model_fields["redis_wait_timeout_ms"].default


#: transition.lua returns this many values per transition: outcome, state after, a number, the fencing token.
TRANSITION_RESULT_WIDTH = 4
#: At most this many jobs of a batch enqueue go into one script call, so none holds Redis up for long.
RECORD_CHUNK = 100

#: Some fields of a batch of jobs (an alias, since JobStore.list shadows `list` inside the class).
FieldRows = list[dict[str, str | None]]


def lease_value(holder: str, token: int) -> str:
    """What `jobs:lease:<id>` holds: who runs the job, and the fencing token of that attempt (transition.lua)."""
    return f"{holder}/{token}"


@dataclass(frozen=True)
class Reopened:
    """What reopen.lua did: the job's new run when it was put back to queued, or why it was not."""

    run: int | None  #: the new run number, when reopened
    #: the state that kept it from reopening ("missing" when there is no record, "singleton" when another job holds
    #: its key's claim)
    blocked_by: str | None = None
    holder: str | None = None  #: for "singleton": the job that holds the key

    @property
    def reopened(self) -> bool:
        return self.run is not None


@dataclass(frozen=True)
class Retention:
    completed_s: int = 86_400
    completed_count: int = 1000
    failed_s: int = 604_800
    failed_count: int = 10_000

    def args(self) -> list[int]:
        return [self.completed_s, self.completed_count, self.failed_s, self.failed_count]


class TransitionOutcome(StrEnum):
    """What transition.lua did with one transition."""

    APPLIED = "applied"  #: the job is in the state asked for now
    BEHIND = "behind"  #: not applied: the job is already as far along or further (a late or repeated write)
    MISSING = "missing"  #: not applied: the job has no record, and none was given to create
    RUNNING = "running"  #: not applied ("active"): this same attempt already runs, under a live lease
    FENCED = "fenced"  #: not applied: the write carried the token of an attempt that was taken over since


@dataclass(frozen=True)
class Transition:
    outcome: TransitionOutcome
    state: JobState | None  #: the state the job is in afterwards; None when it has no record
    #: for an applied "active": how often this same attempt had started before (its worker died mid-run)
    restarts: int = 0
    #: for RUNNING: the ms left on the lease of the attempt that runs
    lease_left_ms: int = 0
    #: the record's fencing token afterwards: for an applied "active", the token of the attempt it started
    token: int = 0
    #: time.monotonic() when this write was asked for: a lease it took runs from no earlier than that
    asked_at: float = 0.0

    @property
    def applied(self) -> bool:
        return self.outcome is TransitionOutcome.APPLIED

    @property
    def missing(self) -> bool:
        return self.outcome is TransitionOutcome.MISSING

    @property
    def running(self) -> bool:
        return self.outcome is TransitionOutcome.RUNNING

    @property
    def fenced(self) -> bool:
        """Refused: the write carried a token that is no longer the record's (the attempt was taken over)."""
        return self.outcome is TransitionOutcome.FENCED

    @property
    def why_not(self) -> str:
        """For a log line when not applied: the state the job is already in, or missing, running or fenced."""
        return str(self.state) if self.outcome is TransitionOutcome.BEHIND else self.outcome.value


class CancelOutcome(StrEnum):
    """What cancel.lua did; the value is how the API and the CLI say it."""

    CANCELLED = "cancelled"  #: it was waiting (queued or delayed): cancelled now, it never runs
    CANCELLING = "cancelling"  #: it is running: asked to stop (`cancelRequested`)
    LEFT_ACTIVE = "active"  #: it is running, and the caller asked to cancel waiting jobs only
    MISSING = "missing"  #: no record
    ALREADY_COMPLETED = "already completed"  #: it had finished: nothing to cancel
    ALREADY_FAILED = "already failed"
    ALREADY_CANCELLED = "already cancelled"


@dataclass(frozen=True)
class HeldLease:
    """A lease a worker holds (or gives back): the job and the fencing token of its attempt."""

    job_id: str
    token: int


@dataclass(frozen=True)
class Counters:
    created: dict[str, int]  #: "queue|actor" -> jobs created
    entered: dict[str, int]  #: "queue|actor|state" -> times a job entered the state
    runs: dict[str, float]  #: "queue|actor|le", "...|sum", "...|count" -> attempt run times (see common.lua)


@dataclass(frozen=True)
class KeyLoad:
    """Keyed jobs waiting (queued or delayed) and running (active), as the scripts keep them: "queue|actor|key" ->
    count, only counts above 0 (see move_key in lua/common.lua)."""

    waiting: dict[str, int]
    running: dict[str, int]


@dataclass(frozen=True)
class IdempotencyClaim:
    job_id: str  #: the job that owns the key
    same_payload: bool  #: whether its payload is the one this caller sent
    pending: bool  #: its enqueue is not confirmed yet: it may still fail and release the key


#: Idempotency keys change only while the same job holds them (KEYS: the key; ARGV: job id, then the ttl).
_CONFIRM_KEY = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local claim = cjson.decode(raw)
if claim.jobId ~= ARGV[1] then return 0 end
claim.pending = nil
redis.call('SET', KEYS[1], cjson.encode(claim), 'EX', tonumber(ARGV[2]))
return 1
"""
_RELEASE_KEY = """
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw).jobId == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Page:
    jobs: list[JobRecord]
    next: str | None


class JobStore:
    """All reads and writes of job records. Transitions run as Lua scripts, so each is atomic."""

    def __init__(
        self,
        client: redis.Redis,
        retention: Retention | None = None,
        *,
        events_maxlen: int = DEFAULT_EVENTS_MAXLEN,
        replicas_to_wait: int = 0,
        replica_wait_ms: int = DEFAULT_REPLICA_WAIT_MS,
    ) -> None:
        self.client = client
        self.retention = retention or Retention()
        #: Lifecycle events kept in the stream (EVENTS_STREAM_MAXLEN), baked into every script that writes one.
        self.events_maxlen = events_maxlen
        self._transition = self._script("transition")
        #: transition.lua's arguments before the groups: the retention
        self._transition_head: list[str | int] = [*self.retention.args()]
        #: A final state is written before its job's message is acknowledged: with `replicas_to_wait`
        #: (REDIS_WAIT_REPLICAS), only once that many replicas have it, so a failover cannot take it back.
        self._transitions = ScriptBatcher(
            client,
            self._transition,
            keys=scripts.LAYOUT,
            head=self._transition_head,
            result_width=TRANSITION_RESULT_WIDTH,
            wait_replicas=replicas_to_wait,
            wait_timeout_ms=replica_wait_ms,
        )
        self._progress = self._script("progress")
        self._cancel = self._script("cancel")
        self._reopen = self._script("reopen")
        self._discard = self._script("discard")
        self._prune = self._script("prune")
        self._requeue_lost = self._script("requeue_lost")
        self._renew_leases = self._script("renew_leases")
        self._sweep_index = self._script("sweep_index")
        self._confirm_key = client.register_script(_CONFIRM_KEY)
        self._release_key = client.register_script(_RELEASE_KEY)

    def _script(self, name: str) -> Script:
        """A job-store script, to be called with `keys=scripts.LAYOUT` (and its own keys after)."""
        return self.client.register_script(scripts.job_script(name, self.events_maxlen))

    # -- writes ---------------------------------------------------------------------------------------------

    def transition(
        self,
        job_id: str,
        state: JobState,
        *,
        run: int = 0,
        retries: int = 0,
        fields: dict[str, Any] | None = None,
        create: dict[str, Any] | None = None,
        at_ms: int | None = None,
        lease: tuple[str, int] | None = None,
        token: int | None = None,
    ) -> Transition:
        """Move a job to `state` unless it is already further along; `create` makes the record if it is absent.

        `token`: for a final state or a retry's "delayed", the fencing token of the attempt writing it; for "active",
        that of the attempt that published the message. Refused ("fenced") when the record's token is a later one; an
        earlier one means a failover set the record back, and the write is taken. A final state waits for
        `replicas_to_wait` replicas (NotReplicated when too few took it in time)."""
        asked_at = time.monotonic()
        args = self._transition_args(job_id, state, run, retries, fields, create, at_ms, lease, token)
        said, state_after, number, current = self._transitions.call(args, durable=state in FINAL_STATES)
        outcome, number, current = TransitionOutcome(said), int(number), int(current)
        after = None if state_after is None else JobState(state_after)
        if outcome is TransitionOutcome.RUNNING:
            return Transition(outcome, after, lease_left_ms=number, token=current, asked_at=asked_at)
        restarts = number if outcome is TransitionOutcome.APPLIED else 0
        return Transition(outcome, after, restarts=restarts, token=current, asked_at=asked_at)

    def record_enqueued(self, jobs: list[tuple[str, JobState, dict[str, Any]]]) -> None:
        """Many (job id, queued/delayed, record fields) transitions in one round trip, for a batch enqueue. Each is
        taken as if alone, RECORD_CHUNK to a script call."""
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, len(jobs), RECORD_CHUNK):
            groups = [self._transition_args(job_id, state, 0, 0, None, create, None)
                      for job_id, state, create in jobs[start : start + RECORD_CHUNK]]  # fmt: skip
            args = self._transition_head + [arg for group in groups for arg in group]
            self._transition(keys=scripts.LAYOUT, args=args, client=pipe)
        pipe.execute()

    def _transition_args(
        self,
        job_id: str,
        state: JobState,
        run: int,
        retries: int,
        fields: dict[str, Any] | None,
        create: dict[str, Any] | None,
        at_ms: int | None,
        lease: tuple[str, int] | None = None,
        token: int | None = None,
    ) -> list[str | int]:
        stamp = at_ms or now_ms()
        holder, lease_ms = lease or ("", 0)
        return [  # one group of transition.lua's arguments
            job_id,
            state.value,
            run,
            retries,
            stamp,
            iso_from_ms(stamp),
            json.dumps(fields or {}),
            json.dumps(create) if create is not None else "",
            holder,
            lease_ms,
            "" if token is None else token,
        ]

    def renew_leases(
        self, holder: str, lease_ms: int, held: Sequence[HeldLease], given_back: Sequence[HeldLease] = ()
    ) -> set[str]:
        """Extend the leases `holder` still holds, each only if its token is still the one in Redis, and give back
        `given_back` (attempts interrupted alive); one round trip. Returns the ids of the held leases that are lost."""
        args: list[str | int] = [lease_ms, len(held)]
        for lease in held:
            args += [lease.job_id, lease_value(holder, lease.token)]
        for lease in given_back:
            args += [lease.job_id, lease_value(holder, lease.token), lease.token]
        return {str(job_id) for job_id in self._renew_leases(keys=scripts.LAYOUT, args=args)}

    def report_progress(self, job_id: str, percent: int, message: str | None) -> tuple[bool, bool]:
        """Returns (recorded, cancellation requested)."""
        applied, _, cancel = self._progress(keys=scripts.LAYOUT, args=[job_id, percent, message or ""])
        return bool(applied), bool(cancel)

    def cancel(self, job_id: str, *, waiting_only: bool = False, reason: str = "") -> CancelOutcome:
        """Cancel a waiting job, or ask a running one to stop. With `waiting_only`, a running job is left alone
        (LEFT_ACTIVE: a purge must not stop work)."""
        stamp = now_ms()
        r = self.retention
        args: list[str | int] = [job_id, stamp, iso_from_ms(stamp), r.failed_s, r.failed_count, int(waiting_only)]
        args.append(reason)
        return CancelOutcome(self._cancel(keys=scripts.LAYOUT, args=args))

    def reopen(self, job_id: str, *, claim: str | None = None, pending_ms: int = 0) -> Reopened:
        """Put a failed or cancelled job back to queued, as its next run. `claim`: the singleton claim it takes again
        first ("<actor>:<key>"), refused while another job holds it."""
        args: list[str | int] = [job_id, iso_from_ms(now_ms()), claim or "", pending_ms]
        ok, value, *holder = self._reopen(keys=scripts.LAYOUT, args=args)
        if ok:
            return Reopened(run=int(value))
        return Reopened(run=None, blocked_by=str(value), holder=str(holder[0]) if holder else None)

    def reopen_many(self, job_ids: Sequence[str]) -> builtins.list[Reopened]:
        """reopen() for each, in one round trip (each its own atomic step)."""
        pipe = self.client.pipeline(transaction=False)
        stamp = iso_from_ms(now_ms())
        for job_id in job_ids:
            self._reopen(keys=scripts.LAYOUT, args=[job_id, stamp], client=pipe)
        return [
            Reopened(run=int(value)) if ok else Reopened(run=None, blocked_by=str(value))
            for ok, value in pipe.execute()
        ]

    def cancel_many(self, job_ids: Sequence[str]) -> builtins.list[CancelOutcome]:
        """cancel() for each, in one round trip (each its own atomic step)."""
        pipe = self.client.pipeline(transaction=False)
        stamp = now_ms()
        r = self.retention
        for job_id in job_ids:
            args: list[str | int] = [job_id, stamp, iso_from_ms(stamp), r.failed_s, r.failed_count, 0, ""]
            self._cancel(keys=scripts.LAYOUT, args=args, client=pipe)
        return [CancelOutcome(outcome) for outcome in pipe.execute()]

    def discard(self, job_id: str) -> bool:
        """Remove a record that never started; used when its message could not be published."""
        return bool(self._discard(keys=scripts.LAYOUT, args=[job_id]))

    def discard_many(self, job_ids: Sequence[str]) -> int:
        """discard() for each, in one round trip; returns how many were removed."""
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            self._discard(keys=scripts.LAYOUT, args=[job_id], client=pipe)
        return sum(bool(removed) for removed in pipe.execute())

    def prune(self, actor: str) -> int:
        return int(self._prune(keys=scripts.LAYOUT, args=[actor, now_ms(), *self.retention.args()]))

    def claim_idempotency_key(self, key: str, job_id: str, payload: Any, *, pending_s: int) -> IdempotencyClaim:
        """First caller wins, its claim pending (for `pending_s` at most) until confirm_idempotency_key()."""
        fingerprint = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        value = json.dumps({"jobId": job_id, "fingerprint": fingerprint, "pending": True})
        while True:
            if self.client.set(keys.idempotency(key), value, nx=True, ex=pending_s):
                return IdempotencyClaim(job_id, same_payload=True, pending=True)
            raw = self.client.get(keys.idempotency(key))
            if raw is not None:  # else released or expired between the two calls: try again
                owner = json.loads(raw)
                # A claim written before claims could be pending has no "pending": it was confirmed.
                pending = bool(owner.get("pending", False))
                return IdempotencyClaim(str(owner["jobId"]), owner["fingerprint"] == fingerprint, pending)

    def confirm_idempotency_key(self, key: str, job_id: str, ttl_s: int) -> bool:
        """The claimant's job is recorded and published: the key now answers with its id, for `ttl_s`."""
        return bool(self._confirm_key(keys=[keys.idempotency(key)], args=[job_id, ttl_s]))

    def release_idempotency_key(self, key: str, job_id: str) -> None:
        """Free the key, if `job_id` still holds it (its enqueue failed), for the next request to claim."""
        self._release_key(keys=[keys.idempotency(key)], args=[job_id])

    # -- reads ----------------------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(keys.job(job_id))
        pipe.lrange(keys.history(job_id), 0, -1)
        fields, history = pipe.execute()
        if not fields:
            return None
        from service.domain.records import (
            JobRecord,  # here: a worker never reads records, and building them costs its start
        )

        return JobRecord.from_redis(fields, history)

    def state_of(self, job_id: str) -> str | None:
        value = self.client.hget(keys.job(job_id), "state")
        return str(value) if value is not None else None

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.client.hget(keys.job(job_id), "cancelRequested") == "1")

    def count(self, actor: str | None = None, state: JobState | None = None) -> int:
        return int(self.client.zcard(keys.index(actor, state.value if state else None)))

    def counts(self, actors: list[str]) -> dict[tuple[str, JobState], int]:
        """How many jobs each actor has in each state, in one round trip."""
        pairs = [(actor, state) for actor in actors for state in JobState]
        pipe = self.client.pipeline(transaction=False)
        for actor, state in pairs:
            pipe.zcard(keys.index(actor, state.value))
        return dict(zip(pairs, (int(n) for n in pipe.execute()), strict=True))

    def counters(self) -> Counters:
        """The totals the Lua scripts keep for /metrics, read together."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(keys.METRICS_CREATED)
        pipe.hgetall(keys.METRICS_ENTERED)
        pipe.hgetall(keys.METRICS_RUNS)
        created, entered, runs = pipe.execute()
        return Counters(
            created={k: int(v) for k, v in created.items()},
            entered={k: int(v) for k, v in entered.items()},
            runs={k: float(v) for k, v in runs.items()},
        )

    def key_load(self) -> KeyLoad:
        """Every key's waiting and running jobs. Read with HSCAN, a thousand fields a call, so however many keys are
        busy Redis is never held up by one long read; a job that moves while it is read may be seen in both or
        neither, as in any scrape."""
        return KeyLoad(
            waiting={str(k): int(v) for k, v in self.client.hscan_iter(keys.KEY_WAITING, count=1000)},
            running={str(k): int(v) for k, v in self.client.hscan_iter(keys.KEY_RUNNING, count=1000)},
        )

    def actors(self) -> list[str]:
        return sorted(str(a) for a in self.client.smembers(keys.ACTORS))

    def throughput(self, minutes: int = 60, at_ms: int | None = None) -> list[MinuteCount]:
        """Jobs completed and failed in each of the last `minutes` minutes, oldest first, the current one last."""
        current = (at_ms or now_ms()) // 60_000
        span = range(current - minutes + 1, current + 1)
        names = [keys.throughput(state, m) for m in span for state in ("completed", "failed")]
        values = self.client.mget(names)
        return [
            MinuteCount(m * 60_000, int(values[2 * i] or 0), int(values[2 * i + 1] or 0)) for i, m in enumerate(span)
        ]

    def beat(self, worker_id: str, info: dict[str, Any], ttl_s: float) -> None:
        """A worker process says it is alive, for `ttl_s` seconds."""
        expires = now_ms() + int(ttl_s * 1000)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(keys.worker(worker_id), json.dumps(info), px=int(ttl_s * 1000))
        pipe.zadd(keys.WORKERS, {worker_id: expires})
        pipe.execute()

    def forget_worker(self, worker_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(keys.worker(worker_id))
        pipe.zrem(keys.WORKERS, worker_id)
        pipe.execute()

    def workers(self) -> list[dict[str, Any]]:
        """The last heartbeat of each worker process still alive, by id."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zremrangebyscore(keys.WORKERS, "-inf", now_ms())
        pipe.zrange(keys.WORKERS, 0, -1)
        _, ids = pipe.execute()
        if not ids:
            return []
        beats = self.client.mget([keys.worker(str(i)) for i in ids])
        return [json.loads(b) for b in beats if b]

    def progress_of(self, job_ids: Sequence[str]) -> list[tuple[str | None, str | None, str | None]]:
        """(state, progress, progressMessage) of each job, in one round trip; all None for a job with no record."""
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(keys.job(job_id), ["state", "progress", "progressMessage"])
        return [(row[0], row[1], row[2]) for row in pipe.execute()]

    def list(
        self,
        *,
        actor: str | None = None,
        state: JobState | None = None,
        key: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Newest first. The cursor is "<createdMs>:<jobId>" of the last job of the previous page."""
        return self.search(JobFilter(key=key, actor=actor, state=state), limit=limit, cursor=cursor)

    def search(
        self, flt: JobFilter, *, limit: int = 50, cursor: str | None = None, examine: int = job_search.EXAMINE_PER_PAGE
    ) -> Page:
        """Newest first, examining at most `examine` jobs (service/store/job_search.py): a page may come back short
        with a `next` cursor, the last job examined, to go on from."""
        ids, last = job_search.search(self.client, flt, limit=limit, cursor=parse_cursor(cursor), examine=examine)
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(keys.job(job_id))
            pipe.lrange(keys.history(job_id), 0, -1)
        raw = pipe.execute()
        from service.domain.records import JobRecord

        jobs = [JobRecord.from_redis(raw[i], raw[i + 1]) for i in range(0, len(raw), 2) if raw[i]]
        return Page(jobs, f"{last[0]}:{last[1]}" if last else None)

    def matching(self, flt: JobFilter, fields: Sequence[str]) -> Iterator[builtins.list[tuple[str, job_search.Row]]]:
        """Every job the filter matches, newest first, in batches, with `fields` of its record (no cap)."""
        return job_search.matching(self.client, flt, fields)

    def window(
        self, actor: str, start_ms: int, end_ms: int, fields: Sequence[str], *, batch: int = 500
    ) -> Iterator[FieldRows]:
        """The given fields of an actor's jobs created in [start_ms, end_ms), a batch at a time, oldest first."""
        offset = 0
        while True:
            ids = [
                str(i)
                for i in self.client.zrangebyscore(keys.index(actor), start_ms, f"({end_ms}", start=offset, num=batch)
            ]
            if not ids:
                return
            offset += len(ids)
            pipe = self.client.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(keys.job(job_id), fields)
            rows = pipe.execute()
            yield [dict(zip(fields, row, strict=True)) for row in rows if any(v is not None for v in row)]

    def ids_in_state(self, actor: str, state: JobState) -> builtins.list[str]:
        """Every job of `actor` in `state`, oldest first (by creation)."""
        return [str(i) for i in self.client.zrange(keys.index(actor, state.value), 0, -1)]

    def fields_of(self, job_ids: Sequence[str], fields: Sequence[str]) -> FieldRows:
        """The given fields of each job, in one round trip; a job whose record is gone reads as all None."""
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(keys.job(job_id), fields)
        return [dict(zip(fields, row, strict=True)) for row in pipe.execute()]

    # -- maintenance ----------------------------------------------------------------------------------------

    def active_without_lease(self, *, batch: int = 500) -> Iterator[tuple[str, str]]:
        """(job id, updatedAt) of active jobs whose lease is gone: candidates for requeue_lost."""
        offset = 0
        while True:
            ids = [
                str(i) for i in self.client.zrange(keys.index(None, JobState.ACTIVE.value), offset, offset + batch - 1)
            ]
            if not ids:
                return
            offset += len(ids)
            pipe = self.client.pipeline(transaction=False)
            for job_id in ids:
                pipe.hget(keys.job(job_id), "updatedAt")
                pipe.exists(keys.lease(job_id))
            answers = pipe.execute()
            for i, job_id in enumerate(ids):
                updated, leased = answers[2 * i], answers[2 * i + 1]
                if updated is not None and not leased:
                    yield job_id, str(updated)

    def requeue_lost(self, job_id: str, seen_updated_at: str) -> bool:
        """Active -> queued for a job no live worker holds (see service/store/lua/requeue_lost.lua)."""
        args = [job_id, seen_updated_at, iso_from_ms(now_ms())]
        return bool(self._requeue_lost(keys=scripts.LAYOUT, args=args))

    def index_keys(self) -> Iterator[str]:
        for pattern in keys.INDEX_PATTERNS:
            for key in self.client.scan_iter(match=pattern, count=500, _type="zset"):
                yield str(key)

    def sweep_index(self, index_key: str, *, batch: int = 500) -> int:
        """Drop entries of one index whose record is gone; returns how many."""
        removed = 0
        cursor = 0
        while True:
            cursor, members = self.client.zscan(index_key, cursor, count=batch)
            if members:
                ids = [str(member) for member, _ in members]
                removed += int(self._sweep_index(keys=[*scripts.LAYOUT, index_key], args=ids))
            if cursor == 0:
                return removed
