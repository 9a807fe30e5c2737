"""Checks the restart tests share: the records a store holds against the executions the tally saw."""

from __future__ import annotations

from dataclasses import dataclass

from service.store.job_store import JobStore
from tests.reliability.executions import Execution, describe


@dataclass(frozen=True)
class WrongRecord:
    job_id: str
    record: str  #: what the job store says
    tally: str  #: what really happened

    def __str__(self) -> str:
        return f"{self.job_id}: record says {self.record}; tally says {self.tally}"


def wrong_records(store: JobStore, ids: list[str], executions: dict[str, list[Execution]]) -> list[WrongRecord]:
    """Every job's record must be final, completed, with the result of one of its completed executions, and count
    at least as many attempts as it had executions."""
    wrong = []
    for job_id in ids:
        runs = executions.get(job_id, [])
        completed = [r for r in runs if r.completed]
        seen = describe(runs) or "never ran"
        record = store.get(job_id)
        if record is None:
            wrong.append(WrongRecord(job_id, "no record", seen))
            continue
        said = f"{record.state.value}, attempts {record.attempts}, result {record.result!r}"
        matches = record.result in {r.pid for r in completed} and record.attempts >= len(runs)
        if record.state.value != "completed" or not matches:
            wrong.append(WrongRecord(job_id, said, seen))
    return wrong
