"""The service layer as one object: what the API, the CLI and the dashboard receive, built once per process by the
composition root (service.bootstrap.services())."""

from __future__ import annotations

from dataclasses import dataclass

from service.ops.activity import Activity
from service.ops.bulk import BulkActions
from service.ops.event_feed import EventFeed
from service.ops.event_log import EventLog
from service.ops.inbound_hooks import InboundHooks
from service.ops.job_logs import JobLogs
from service.ops.jobs import Jobs
from service.ops.metrics import JobMetrics
from service.ops.queues import Queues
from service.ops.schedules import Schedules


@dataclass(frozen=True)
class Services:
    jobs: Jobs
    #: Every queue operation, dead letters (`queues.dead`) and delayed jobs (`queues.delayed`) included.
    queues: Queues
    schedules: Schedules
    activity: Activity
    event_log: EventLog
    #: One reader of the event stream per process, for the API's server-sent events.
    event_feed: EventFeed
    job_logs: JobLogs
    inbound_hooks: InboundHooks
    metrics: JobMetrics
    #: Bulk actions by filter (cancel, retry, requeue-dead): dry runs, runs in the background, their progress.
    bulk: BulkActions
