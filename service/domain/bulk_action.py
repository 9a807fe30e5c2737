"""What a bulk action does to the jobs a filter matches, which jobs it can act on, and how far a run of one is."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.domain.job_filter import JobFilter
from service.domain.states import RETRYABLE_STATES, JobState


class BulkAction(StrEnum):
    #: Waiting jobs (queued, delayed) never run; active ones are asked to stop.
    CANCEL = "cancel"
    #: Failed and cancelled jobs run again, under the same ids, as `POST /jobs/{jobId}/retry` does.
    RETRY = "retry"
    #: Jobs whose message is in their queue's dead-letter queue are sent back for another try, as the dead-letter
    #: requeue does (service/ops/dead_jobs.py).
    REQUEUE_DEAD = "requeue-dead"


#: The states a job must be in for the action to act on it; requeue-dead also needs the job's dead letter.
ACTS_ON: dict[BulkAction, frozenset[JobState]] = {
    BulkAction.CANCEL: frozenset({JobState.QUEUED, JobState.DELAYED, JobState.ACTIVE}),
    BulkAction.RETRY: RETRYABLE_STATES,
    # A dead letter's job is failed or cancelled; one found queued was reopened by a requeue that died before it
    # could tell (the dead-letter requeue sends that run again unless it knows it sent it).
    BulkAction.REQUEUE_DEAD: frozenset({*RETRYABLE_STATES, JobState.QUEUED}),
}


class BulkState(StrEnum):
    #: Going on now (or its process died and another web process takes it over once its lease lapses).
    RUNNING = "running"
    #: Every job of the snapshot was handled.
    DONE = "done"
    #: Stopped on an error it cannot get past; what is left was not touched. `error` says why.
    FAILED = "failed"


@dataclass(frozen=True)
class BulkProgress:
    """A bulk run as any web process, the CLI or the dashboard reads it from Redis."""

    bulk_id: str
    action: BulkAction
    filter: JobFilter
    state: BulkState
    total: int  #: jobs in the snapshot taken at the start: those the action could act on then
    done: int  #: of those, handled so far
    acted: int  #: handled and acted on (retried, cancelled, requeued)
    skipped: int  #: handled but left alone: they changed meanwhile so that the action no longer applies
    started_at: str
    updated_at: str
    finished_at: str | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state is not BulkState.RUNNING
