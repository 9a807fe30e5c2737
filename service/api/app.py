"""The FastAPI application: routers from service.api.routes, error mapping, and nothing else."""

from __future__ import annotations

from fastapi import FastAPI

from service.api import errors
from service.api.limits import BodyLimit
from service.api.routes import health, jobs
from service.broker import settings

app = FastAPI(
    title="Job service",
    version="0.1.0",
    description="Enqueue, watch and steer background jobs run by Dramatiq workers on RabbitMQ.",
)
errors.install(app)
app.add_middleware(BodyLimit, max_bytes=settings.max_payload_bytes)
app.include_router(health.router)
app.include_router(jobs.router)
