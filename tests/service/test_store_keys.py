"""The Redis key layout lives in service/store/keys.py alone, and keeps the names earlier versions wrote."""

from __future__ import annotations

import re
from pathlib import Path

from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.store import keys
from service.store.job_store import CancelOutcome, JobStore, Retention
from tests.support.isolation import LOCK_KEY

LUA = Path(keys.__file__).parent / "lua"


def test_the_key_names_are_the_ones_records_were_stored_under_before() -> None:
    # No migration: a record written by an earlier version is read under the same name.
    assert keys.job("j1") == "jobs:job:j1"
    assert keys.history("j1") == "jobs:history:j1"
    assert keys.job_logs("j1") == "jobs:logs:j1"
    assert keys.lease("j1") == "jobs:lease:j1"
    assert keys.index() == "jobs:index"
    assert keys.index("add") == "jobs:index:actor:add"
    assert keys.index(None, "failed") == "jobs:index:state:failed"
    assert keys.index("add", "failed") == "jobs:index:actor:add:state:failed"
    assert keys.finished("failed", "add") == "jobs:finished:failed:add"
    assert keys.throughput("completed", 29_000_000) == "jobs:throughput:completed:29000000"
    assert (keys.EVENTS, keys.EVENTS_SEQ, keys.ACTORS) == ("jobs:events", "jobs:events:seq", "jobs:actors")
    assert keys.METRICS_RUNS == "jobs:metrics:runs"
    assert (keys.KEY_WAITING, keys.KEY_RUNNING) == ("jobs:key-waiting", "jobs:key-running")
    assert keys.idempotency("k") == "jobs:idem:k"
    assert keys.once("email", "j1") == "jobs:once:email:j1"
    assert keys.schedule_tick("report", "2025-03-30T02:30") == "jobs:schedule:report:tick:2025-03-30T02:30"
    assert keys.events_export_lease("x") == "jobs:events:export:x:lease"


def test_no_lua_script_spells_a_key_name() -> None:
    for script in LUA.glob("*.lua"):
        code = "\n".join(line.partition("--")[0] for line in script.read_text().splitlines())  # comments aside
        assert keys.PREFIX not in code, script.name
        for name in ("'job:'", "'lease:'", "'index'", "'events'", "'logs:'", "'finished:'", "'throughput:'"):
            assert name not in code, f"{script.name} spells {name}"


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile(".+".join(re.escape(piece) for piece in template.split("%s")) + "$")


def test_every_key_the_scripts_write_for_a_job_is_one_keys_py_names(jobs: Jobs) -> None:
    store = JobStore(jobs.store.client, Retention(completed_count=1))
    create = {"jobId": "k1", "actor": "add", "queue": "q", "data": "{}", "createdMs": 1, "createdAt": "x"}
    for job_id in ("k1", "k2"):  # the second completion prunes the first job
        started = store.transition(job_id, JobState.ACTIVE, create={**create, "jobId": job_id}, lease=("h:1", 5000))
        assert started.applied
        assert store.transition(job_id, JobState.COMPLETED, fields={"result": "1"}).applied
    store.transition("k4", JobState.QUEUED, create={**create, "jobId": "k4"})
    assert store.cancel("k4") is CancelOutcome.CANCELLED
    store.transition("k5", JobState.QUEUED, create={**create, "jobId": "k5", "key": "tenant"})  # a keyed job waits
    assert store.get("k1") is None  # pruned: the pruning ran too
    assert store.renew_leases("h:1", 5000, []) == set()

    families = [
        keys.job, keys.history, keys.lease, keys.index_by_actor, keys.index_by_state, keys.index_by_actor_state,
        keys.finished, keys.throughput, keys.index_by_key,
    ]  # fmt: skip
    patterns = [_pattern(family.template) for family in families]
    fixed = {keys.INDEX, keys.EVENTS, keys.EVENTS_SEQ, keys.ACTORS, keys.METRICS_CREATED, keys.METRICS_ENTERED}
    fixed |= {keys.METRICS_RUNS, keys.KEY_WAITING, keys.KEY_RUNNING}
    written = {str(key) for key in store.client.scan_iter(count=1000)} - {LOCK_KEY}
    strangers = {key for key in written - fixed if not any(p.match(key) for p in patterns)}
    assert strangers == set()
    assert {keys.index("add", "completed"), keys.finished("completed", "add"), keys.EVENTS_SEQ} <= written
    assert keys.KEY_WAITING in written
