"""The service layer on servers of a test's own (a Redis that is full, a RabbitMQ that is away), wired as the
composition root wires the real one, and the API serving it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from dramatiq.brokers.rabbitmq import RabbitmqBroker
from fastapi.testclient import TestClient

from service.bootstrap import build_log_store, build_services, settings
from service.ops.services import Services
from service.store.job_store import JobStore
from service.store.pauses import PauseFlags
from service.store.schedule_store import ScheduleStore
from service.web import app
from service.web.deps import PARTS


def services_on(broker: RabbitmqBroker, store: JobStore) -> Services:
    redis = store.client
    return build_services(
        settings,
        broker,
        store,
        pauses=PauseFlags(redis),
        schedule_store=ScheduleStore(redis),
        log_store=build_log_store(settings, redis),
    )


@contextmanager
def serving(services: Services) -> Iterator[TestClient]:
    """The in-process API with every route on these services."""
    for provide, pick in PARTS.items():
        app.dependency_overrides[provide] = partial(pick, services)
    try:
        with TestClient(app) as client:
            yield client
    finally:
        for provide in PARTS:
            app.dependency_overrides.pop(provide, None)
