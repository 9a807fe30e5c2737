"""The composition root: builds the one global Dramatiq broker, the Redis client, the stores, and (lazily, for the
API, the CLI and the dashboard) the one service object.

A worker imports this module for the broker and never calls services(), so it never imports the service layer."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import AgeLimit, Callbacks, CurrentMessage, Pipelines, ShutdownNotifications
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

from service import logs, tracing
from service.domain.states import MAX_BROKER_PRIORITY
from service.rabbit.queue_types import QueueShape, QueueType
from service.settings import Settings, get_settings
from service.store.connection import redis_for
from service.store.fair_lane_store import FairLaneStore
from service.store.flow_store import FlowStore
from service.store.job_store import JobStore, Retention
from service.store.limits import LimitStore
from service.store.log_store import JobLogStore
from service.store.pauses import PauseFlags
from service.store.redis_config import warn_if_unsafe
from service.store.schedule_store import ScheduleStore
from service.worker import progress, ticks
from service.worker.hook_failures import GuardedRabbitmqBroker, HookFailures
from service.worker.job_log_capture import JobLogCapture
from service.worker.metrics import WorkerMetrics
from service.worker.middleware.debounce import Debounce
from service.worker.middleware.fair_lanes import FairLanes
from service.worker.middleware.graceful_stop import GracefulStop
from service.worker.middleware.heartbeat import Heartbeat
from service.worker.middleware.in_hand import JobsInHand
from service.worker.middleware.interrupts import JobTimeLimit
from service.worker.middleware.job_keys import JobKeys
from service.worker.middleware.job_logs import JobLogs
from service.worker.middleware.lease import JobLease
from service.worker.middleware.limits import Limits
from service.worker.middleware.parking import ParkingLot, install_quiet_parking
from service.worker.middleware.pause import QueuePause
from service.worker.middleware.periodic import PeriodicJobs
from service.worker.middleware.redis_check import RedisConfigCheck
from service.worker.middleware.retries import Retries
from service.worker.middleware.singleton import Singleton
from service.worker.middleware.status import StatusMiddleware
from service.worker.middleware.tracing import AttemptSpans
from service.worker.middleware.worker_logs import DirectWorkerLogs

if TYPE_CHECKING:
    from service.ops.services import Services


def build_store(settings: Settings, client: redis.Redis) -> JobStore:
    return JobStore(
        client,
        Retention(
            completed_s=settings.job_retention_completed_s,
            completed_count=settings.job_retention_completed_count,
            failed_s=settings.job_retention_failed_s,
            failed_count=settings.job_retention_failed_count,
        ),
        events_maxlen=settings.events_stream_maxlen,
        replicas_to_wait=settings.redis_replicas_to_wait,
        replica_wait_ms=settings.redis_wait_timeout_ms,
    )


def build_log_store(settings: Settings, client: redis.Redis) -> JobLogStore:
    # Lines outlive their last write by the longest retention, so they never outlive a record that kept them.
    ttl_s = max(settings.job_retention_completed_s, settings.job_retention_failed_s)
    return JobLogStore(client, keep=max(settings.job_log_lines, 1), ttl_s=ttl_s)


def build_log_capture(settings: Settings, client: redis.Redis) -> JobLogCapture:
    return JobLogCapture(
        build_log_store(settings, client),
        keep=settings.job_log_lines,
        line_chars=settings.job_log_line_chars,
        flush_s=settings.job_log_flush_ms / 1000,
    )


#: Added to RABBITMQ_URL unless it sets them itself. Heartbeats let a worker notice a silent broker (pika's default
#: would wait minutes); two quick connection attempts let the API answer 503 within seconds while the broker is away
#: (Dramatiq itself tries an enqueue 6 times, so a blip of a few seconds is still ridden out).
CONNECTION_DEFAULTS = {
    "heartbeat": "30",
    "blocked_connection_timeout": "30",
    "connection_attempts": "2",
    "retry_delay": "1",
}


def with_connection_defaults(url: str) -> str:
    """RABBITMQ_URL with CONNECTION_DEFAULTS for every parameter it does not set (each URL of a ;-list)."""
    urls = []
    for one in url.split(";"):
        missing = [f"{k}={v}" for k, v in CONNECTION_DEFAULTS.items() if f"{k}=" not in one]
        urls.append(one + ("&" if "?" in one else "?") + "&".join(missing) if missing else one)
    return ";".join(urls)


def build_broker(settings: Settings, client: redis.Redis, store: JobStore, pauses: PauseFlags) -> RabbitmqBroker:
    # The order matters: "before" hooks run top to bottom and "after" hooks bottom to top, so the limits
    # decide before a job is marked active, and the status middleware sees the retry decision already made.
    # Pause and stop come first: a message they hand back to RabbitMQ must not be marked active or counted by a limit.
    # The jobs in hand come right after them, so a message they hand back is never in hand, and every later hook
    # finds its message's entry: written by the first "before" hook, removed by the last "after" or "skip" hook.
    parking = ParkingLot()
    install_quiet_parking()
    flow = FlowStore(store)
    in_hand = JobsInHand()  # also every interruption goes through it: only while an actor runs, never in a hook
    leases = JobLease(store, in_hand, lease_ms=settings.job_lease_ms)
    limits = Limits(
        LimitStore(client),
        store,
        lease_ms=settings.job_lease_ms,
        max_payload_bytes=settings.max_payload_bytes,
        overrides=settings.job_limits,
    )
    leases.renewed_with.append(limits.renew)  # a concurrency slot lives as long as its job's lease
    status = StatusMiddleware(
        store,
        in_hand,
        max_payload_bytes=settings.max_payload_bytes,
        lease_ms=settings.job_lease_ms,
        leases=leases,
        outage_grace_s=settings.job_store_retry_s,
    )
    middleware = [
        DirectWorkerLogs(),
        WorkerMetrics(settings.worker_metrics_port, in_hand),  # no per-message hook: read when scraped
        QueuePause(pauses, parking),
        GracefulStop(parking, in_hand, timeout_s=settings.worker_shutdown_timeout_s),
        in_hand,
        AgeLimit(),
        JobTimeLimit(in_hand, time_limit=settings.job_time_limit_ms),  # no per-message hook: reads the jobs in hand
        ShutdownNotifications(),
        CurrentMessage(),
        JobKeys(),  # before every hook that acts per key, and before the record of a foreign message is written
        # Before the limits: a refused or superseded job takes no rate or concurrency slot; before status, which
        # records the singleton claim the job holds with its record.
        Singleton(flow, store, max_payload_bytes=settings.max_payload_bytes),
        Debounce(flow, store, max_payload_bytes=settings.max_payload_bytes),
        FairLanes(FairLaneStore(client)),  # after the key is known and the send accepted: the lane it is published to
        PeriodicJobs(store, grace_s=settings.schedule_misfire_grace_s, max_payload_bytes=settings.max_payload_bytes),
        limits,  # after the keys and flow control; before the record says "active" (a job that waits is not active)
        AttemptSpans(),  # before status: its span is open when "active" is written and when a retry is published
        leases,
        JobLogs(build_log_capture(settings, client)),  # before status: its after hook sees the outcome's log line
        status,
        Heartbeat(store, in_hand),  # no per-message hook: beats what the jobs in hand say
        Retries(max_retries=settings.job_max_retries, delays=settings.job_retry_delays_ms, leases=leases),
        Callbacks(),
        Pipelines(),
        Results(backend=RedisBackend(client=redis_for(settings, decode_responses=False))),  # type: ignore[no-untyped-call]
    ]
    url = with_connection_defaults(settings.rabbitmq_url)
    shape = QueueShape(
        QueueType(settings.rabbitmq_queue_type),
        MAX_BROKER_PRIORITY,
        fair=tuple(settings.fair_queues),
        fair_lanes=settings.fair_lanes,
    )
    broker = GuardedRabbitmqBroker(url=url, confirm_delivery=True, shape=shape, middleware=middleware)
    # A hook that fails means "not run" before a job and "not acknowledged yet" after it
    # (service/worker/hook_failures.py).
    broker.hook_failures = HookFailures(parking, record_outcome=[status], leases=leases)
    broker.add_middleware(RedisConfigCheck(client))  # warns at each worker's start when Redis may lose records
    return broker


settings = get_settings()
logs.configure(settings.log_level, settings.log_format)  # its secrets were registered when they were loaded
tracing.configure(settings)  # nothing at all unless the OTEL_* variables ask for traces
redis_client = redis_for(settings)
store = build_store(settings, redis_client)
progress.bind_store(store)
schedule_store = ScheduleStore(redis_client)
log_store = build_log_store(settings, redis_client)
ticks.bind_store(schedule_store)
pauses = PauseFlags(redis_client)  # the one set of pause flags: workers read them, the service layer sets them
broker = build_broker(settings, redis_client, store, pauses)
dramatiq.set_broker(broker)


def declare_jobs() -> None:
    """Declares every job (each module of the `actors` package) on the broker: the worker, the API and the CLI all
    know the jobs through this. Once per process; a later call finds them declared."""
    import actors  # noqa: F401  (here, not at the top: `actors` imports this module first, for the broker)


@functools.cache
def services() -> Services:
    """The service layer, built on first use and once per process, after every job is declared."""
    declare_jobs()
    return build_services(settings, broker, store, pauses=pauses, schedule_store=schedule_store, log_store=log_store)


def build_services(
    settings: Settings,
    broker: RabbitmqBroker,
    store: JobStore,
    *,
    pauses: PauseFlags,
    schedule_store: ScheduleStore,
    log_store: JobLogStore,
) -> Services:
    """The service objects, wired from these adapters (services() passes this process's; a test may pass others)."""
    # Imported here, not at the top: a worker never builds the service layer, and its start-up stays lighter.
    from service.ops.activity import Activity
    from service.ops.bulk import BulkActions
    from service.ops.dead_jobs import DeadJobs
    from service.ops.delayed import DelayedJobs
    from service.ops.event_feed import EventFeed
    from service.ops.event_log import EventLog
    from service.ops.inbound_hooks import HOOK_ID_TTL_S, InboundHooks
    from service.ops.job_logs import JobLogs
    from service.ops.jobs import Jobs
    from service.ops.metrics import JobMetrics
    from service.ops.queues import Queues
    from service.ops.schedules import Schedules
    from service.ops.services import Services
    from service.rabbit.dead_letters import DeadLetters
    from service.rabbit.link import shared_link
    from service.store.bulk_store import BulkStore
    from service.store.hook_ids import HookIds

    link = shared_link(broker)
    jobs = Jobs(broker, store, link)
    dead = DeadJobs(jobs, DeadLetters(link), store.client)
    queues = Queues(jobs, store, link, pauses, dead=dead, delayed=DelayedJobs(jobs))
    activity = Activity(store)
    event_log = EventLog(store.client)
    return Services(
        jobs=jobs,
        queues=queues,
        schedules=Schedules(broker, schedule_store),
        activity=activity,
        event_log=event_log,
        event_feed=EventFeed(event_log),
        job_logs=JobLogs(log_store, settle_s=2 * settings.job_log_flush_ms / 1000),
        inbound_hooks=InboundHooks(jobs, HookIds(store.client, HOOK_ID_TTL_S)),
        metrics=JobMetrics(
            jobs, queues, activity, event_log, events_maxlen=store.events_maxlen, top_keys=settings.metrics_top_keys
        ),
        bulk=BulkActions(jobs, dead, BulkStore(store.client)),
    )


def check_redis(process: str) -> None:
    """At a process's start: a warning when Redis is set up so that it may lose records (store/redis_config.py)."""
    warn_if_unsafe(redis_client, process)
