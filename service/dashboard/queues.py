"""Per-queue figures for the overview, from the service layer."""

from __future__ import annotations

from dataclasses import dataclass

from service.jobs import Jobs
from service.states import JobState


@dataclass(frozen=True)
class QueueFigures:
    name: str
    waiting: int
    active: int
    delayed: int
    completed: int
    failed: int
    dead: int | None  #: None: not known to this version of the service layer
    paused: bool | None


def figures(jobs: Jobs) -> list[QueueFigures]:
    # Interim: the job store's counts per actor, summed by queue, until the service layer reads RabbitMQ's depths.
    totals: dict[str, dict[JobState, int]] = {}
    for name in jobs.actor_names():
        queue = jobs.actor(name).queue_name
        row = totals.setdefault(queue, dict.fromkeys(JobState, 0))
        for state in JobState:
            row[state] += jobs.store.count(actor=name, state=state)
    return [
        QueueFigures(
            name=queue,
            waiting=row[JobState.QUEUED],
            active=row[JobState.ACTIVE],
            delayed=row[JobState.DELAYED],
            completed=row[JobState.COMPLETED],
            failed=row[JobState.FAILED],
            dead=None,
            paused=None,
        )
        for queue, row in sorted(totals.items())
    ]
