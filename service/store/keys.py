"""Every Redis key the service writes, in one place: the Python code and the Lua scripts take their names from here.

A family of keys is a template whose `%s` holes take the parts that tell its keys apart (a job id, an actor, a
state): Python fills it with `%`, Lua with string.format, so one spelling serves both. The job-store scripts
(lua/*.lua) get the families they write as KEYS (LUA_KEYS), the way Dramatiq's own Redis broker passes its namespace,
and build each key from them. They cannot be handed the keys themselves: which keys a transition touches depends on
what the script reads first (the job's actor and current state pick its index sets), and one call carries a batch
of up to 64 jobs; naming each key up front would take a read before every write and some ten KEYS a job.

Key names never change without a migration: records written by an earlier version must still be read.
Redis Cluster would want every key a script touches in one slot: that is one hash tag in PREFIX (`{jobs}:`), which
the families passed as KEYS would then carry too.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "jobs:"


@dataclass(frozen=True)
class Key:
    """A family of keys: `template` with a `%s` hole for each part, in the order the call takes them."""

    template: str

    def __call__(self, *parts: str | int) -> str:
        return self.template % parts

    @property
    def prefix(self) -> str:
        """What every key of the family starts with (a SCAN pattern's head); for a family whose one hole ends it, Lua
        builds a key as the prefix and the part, cheaper than string.format on every transition."""
        return self.template.partition("%s")[0]


#: A job's record (a hash), its state history (a list) and the last lines its own code logged (a list of JSON
#: lines); all three are deleted together by the retention prune (lua/common.lua).
job = Key(f"{PREFIX}job:%s")
history = Key(f"{PREFIX}history:%s")
job_logs = Key(f"{PREFIX}logs:%s")
#: Kept alive by the worker running the job; gone means no live worker holds it. Holds "<holder>/<fencing token>".
lease = Key(f"{PREFIX}lease:%s")

#: Sorted sets of job ids by creation time: every job, and narrowed to an actor, a state or both (index()).
INDEX = f"{PREFIX}index"
index_by_actor = Key(f"{INDEX}:actor:%s")
index_by_state = Key(f"{INDEX}:state:%s")
index_by_actor_state = Key(f"{INDEX}:actor:%s:state:%s")
#: Jobs of one key (a tenant, an account: service/domain/job_key.py), by creation time; like the actor index, set once
#: at creation and left by retention's prune.
index_by_key = Key(f"{INDEX}:key:%s")
#: Finished jobs of one state and actor by when they finished (ms): what retention prunes, oldest first.
finished = Key(f"{PREFIX}finished:%s:%s")
#: Jobs that reached a state (completed or failed) in one minute (minutes since the epoch); expires after ~2 h.
throughput = Key(f"{PREFIX}throughput:%s:%s")

#: The lifecycle-event stream, capped at EVENTS_STREAM_MAXLEN: one entry per state change, added by the Lua script
#: that makes the change; and the counter that numbers its events without gaps.
EVENTS = f"{PREFIX}events"
EVENTS_SEQ = f"{EVENTS}:seq"
#: Counters for /metrics, written by the Lua scripts: jobs created per "queue|actor", state entries per
#: "queue|actor|state", attempt run times per "queue|actor|le" (plus "|sum" and "|count").
METRICS_CREATED = f"{PREFIX}metrics:created"
METRICS_ENTERED = f"{PREFIX}metrics:entered"
METRICS_RUNS = f"{PREFIX}metrics:runs"
#: Every actor that ever had a job (a set): what retention walks.
ACTORS = f"{PREFIX}actors"
#: Keyed jobs waiting (queued or delayed) and running (active), per "queue|actor|key", for the per-key gauges of
#: /metrics: kept by the scripts that change states (key_load in lua/common.lua), a field only while it is above 0.
KEY_WAITING = f"{PREFIX}key-waiting"
KEY_RUNNING = f"{PREFIX}key-running"
#: The claim of a singleton actor's key (actor, key): "<job id>|<ms claimed>", held by the one job of the key that is
#: queued, delayed or running (service/domain/flow_control.py). The job's record keeps "<actor>:<key>" (`singleton`),
#: which ends the key, so the script that writes its final state frees it.
singleton = Key(f"{PREFIX}singleton:%s:%s")

#: What every job-store script receives as KEYS, in this order, under these Lua names (service/store/scripts.py
#: declares them above the script): the keys it writes, and the families it builds keys of, as a prefix where the one
#: part ends the key. A script's own keys, if any, follow.
LUA_KEYS: dict[str, str] = {
    "JOB": job.prefix,
    "HISTORY": history.prefix,
    "JOB_LOGS": job_logs.prefix,
    "LEASE": lease.prefix,
    "INDEX": INDEX,
    "INDEX_BY_ACTOR": index_by_actor.prefix,
    "INDEX_BY_STATE": index_by_state.prefix,
    "INDEX_BY_ACTOR_STATE": index_by_actor_state.template,
    "INDEX_BY_KEY": index_by_key.prefix,
    "FINISHED": finished.template,
    "THROUGHPUT": throughput.template,
    "EVENTS": EVENTS,
    "EVENTS_SEQ": EVENTS_SEQ,
    "METRICS_CREATED": METRICS_CREATED,
    "METRICS_ENTERED": METRICS_ENTERED,
    "METRICS_RUNS": METRICS_RUNS,
    "ACTORS": ACTORS,
    "KEY_WAITING": KEY_WAITING,
    "KEY_RUNNING": KEY_RUNNING,
    "SINGLETON": singleton.prefix,
}


def index(actor: str | None = None, state: str | None = None) -> str:
    """The index of every job, or of an actor's and/or a state's (the same choice as idx() in lua/common.lua)."""
    if actor and state:
        return index_by_actor_state(actor, state)
    if actor:
        return index_by_actor(actor)
    return index_by_state(state) if state else INDEX


#: Every job's index and finished set, as SCAN patterns (what the index sweep walks).
INDEX_PATTERNS = (f"{INDEX}*", f"{finished.prefix}*")

#: The claim of an Idempotency-Key (JSON: the job, its payload's fingerprint, pending or not).
idempotency = Key(f"{PREFIX}idem:%s")
#: The actor an inbound hook's webhook-id was first sent to.
hook_id = Key(f"{PREFIX}hook-id:%s")
#: A queue's pause flag.
paused = Key(f"{PREFIX}paused:%s")
#: The key lane a key of a fair queue was given (queue, key), until the key is not sent for a while; and the queue's
#: turn counter, which gives the next new key the next lane (service/store/fair_lane_store.py).
fair_lane = Key(f"{PREFIX}fair:%s:lane:%s")
fair_turn = Key(f"{PREFIX}fair:%s:turn")
#: A limit's state (service/domain/limits.py): scope (the option that declared it), name ("<actor>" or
#: "<actor>:<key>"). A sorted set: of the running jobs' slots scored by when each lapses (concurrency), or of the starts
#: in the sliding window scored by when each started (rate). Lapses unless used.
limit = Key(f"{PREFIX}limit:%s:%s")
#: A lock held by one process at a time (a token; it lapses unless renewed): see service/store/locks.py.
lock = Key(f"{PREFIX}lock:%s")
#: Marks a side effect (an email handed to SMTP) as done for a job, so a redelivery does not repeat it: kind, job id.
once = Key(f"{PREFIX}once:%s:%s")

#: The latest send of a debounced actor's key (actor, key): "<µs sent>:<job id>"; older sends are superseded.
debounce_latest = Key(f"{PREFIX}debounce:%s:%s")

#: One worker process's heartbeat; it expires when the process stops beating.
worker = Key(f"{PREFIX}worker:%s")
#: Sorted set of worker ids scored by when their heartbeat expires (ms); lets readers skip a SCAN.
WORKERS = f"{PREFIX}workers"

#: Hash of a schedule's last tick, last run and skipped ticks.
schedule = Key(f"{PREFIX}schedule:%s")
#: Claimed by the first scheduler to send (or skip) a tick of a schedule (actor, tick); holds the job id.
schedule_tick = Key(f"{PREFIX}schedule:%s:tick:%s")
#: Sorted set of ticks claimed but not yet confirmed published, scored by claim time (Redis clock, ms).
SCHEDULE_UNPUBLISHED = f"{PREFIX}schedule-unpublished"

#: The progress of the latest "requeue all" of a queue's dead letters (a hash).
dead_requeue = Key(f"{PREFIX}dead-requeue:%s")
#: The run of a job whose copy a dead-letter requeue published (confirmed) before acknowledging its dead letter.
dead_sent = Key(f"{PREFIX}dead-sent:%s")

#: Held by the one export relay that may publish to an exchange (a token; it expires unless renewed).
events_export_lease = Key(f"{EVENTS}:export:%s:lease")
#: The consumer group (not a key) through which the RabbitMQ export of an exchange reads the stream.
events_export_group = Key("export:%s")

#: A bulk action's run (a hash: action, filter, state, figures, times), the snapshot of the ids it acts on (a list, in
#: the order it goes through them), the jobs of its current batch it has begun acting on, with the run each was at (a
#: hash: what a run taken over after a crash must finish), and the jobs it handled, with how (a hash: requeue-dead,
#: which goes through dead-letter queues in their own order). All four lapse a day after their last write.
bulk = Key(f"{PREFIX}bulk:%s")
bulk_ids = Key(f"{PREFIX}bulk:%s:ids")
bulk_intents = Key(f"{PREFIX}bulk:%s:intents")
bulk_handled = Key(f"{PREFIX}bulk:%s:handled")
#: Bulk runs not finished, scored by when they started: what every web process looks through for one whose lease
#: lapsed (its process died), to take it over.
BULK_RUNNING = f"{PREFIX}bulk-running"
