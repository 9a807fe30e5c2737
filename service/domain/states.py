"""The states a job moves through, and the order that keeps them from going backwards."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    #: Enqueued, waiting for a worker.
    QUEUED = "queued"
    #: Waiting for its time: sent with a delay, rate-limited, or waiting for a retry.
    DELAYED = "delayed"
    #: A worker is running it.
    ACTIVE = "active"
    #: Finished with a result.
    COMPLETED = "completed"
    #: Finished with an error, retries exhausted or not retryable.
    FAILED = "failed"
    #: Cancelled before it ran, or stopped on request while running.
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
RETRYABLE_STATES = frozenset({JobState.FAILED, JobState.CANCELLED})


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


#: RabbitMQ message priority for each level; queues are declared with x-max-priority 10.
BROKER_PRIORITY = {Priority.LOW: 1, Priority.NORMAL: 5, Priority.HIGH: 9}
MAX_BROKER_PRIORITY = 10
