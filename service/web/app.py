"""The FastAPI application: routers from service.web.routes, error mapping, and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.middleware.trustedhost import TrustedHostMiddleware

from service import logs, tracing
from service.bootstrap import services, settings
from service.settings import public_view
from service.web import errors
from service.web.dashboard import router as dashboard
from service.web.exposure import check_exposure
from service.web.limits import BodyLimit
from service.web.origin import SameOriginOnly
from service.web.routes import (
    bulk,
    dead,
    delayed,
    events,
    health,
    hooks,
    job_logs,
    jobs,
    metrics,
    queues,
    reports,
    schedules,
    workers,
)

logs.adopt_uvicorn_loggers()  # uvicorn configured its own handlers before importing this module
check_exposure(settings)  # before the app is built: a web process that must not start says so and exits

# FastAPI's own OpenTelemetry support opens a span per request, child of the caller's `traceparent` header, and
# keeps it current while the route runs, so the jobs it enqueues carry it. Only traces, and only while tracing is on.
telemetry: TelemetryConfig = {
    "tracing": tracing.is_on(),
    "tracer_provider": tracing.provider(),
    "operation_spans": False,  # no spans of its own per dependency and serialisation: one span per request
    "metrics": False,  # /metrics is Prometheus'
    "logs": False,
}


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """While this process serves, it takes over bulk runs whose process died (service/ops/bulk.py); as it stops, its
    own runs give their leases back, for another web process to go on with at once."""
    bulk = services().bulk
    bulk.watch()
    try:
        yield
    finally:
        await asyncio.get_running_loop().run_in_executor(None, bulk.stop)


app = FastAPI(
    lifespan=lifespan,
    telemetry=telemetry,
    title="Job service",
    version="0.1.0",
    description="Enqueue, watch and steer background jobs run by Dramatiq workers on RabbitMQ.",
)
errors.install(app)
logging.getLogger("service.api").info("configuration: %s", public_view(settings))
app.add_middleware(BodyLimit, max_bytes=settings.max_payload_bytes)
app.add_middleware(SameOriginOnly)
# Outermost: a request for a Host we do not serve (a DNS-rebinding page sends its own domain) gets 400 before anything.
app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
app.include_router(health.router)
app.include_router(bulk.router)  # before jobs: POST /jobs/bulk is not an actor's enqueue
app.include_router(jobs.router)
app.include_router(events.router)
app.include_router(queues.router)
app.include_router(delayed.router)
app.include_router(dead.router)
app.include_router(hooks.router)
app.include_router(reports.router)
app.include_router(metrics.router)
app.include_router(dashboard.router)
app.mount("/dashboard/static", dashboard.static_files, name="dashboard-static")
app.include_router(schedules.router)
app.include_router(job_logs.router)
app.include_router(workers.router)
