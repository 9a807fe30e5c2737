"""The FastAPI application: routers from service.api.routes, error mapping, and nothing else."""

from __future__ import annotations

from fastapi import FastAPI

from service.api import errors
from service.api.routes import health

app = FastAPI(
    title="Job service",
    version="0.1.0",
    description="Enqueue, watch and steer background jobs run by Dramatiq workers on RabbitMQ.",
)
errors.install(app)
app.include_router(health.router)
