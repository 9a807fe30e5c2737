"""ping: returns its payload. Health checks and benchmarks use it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from service.worker.typed_actor import job


class PingPayload(BaseModel):
    model_config = ConfigDict(extra="allow")


@job(PingPayload, queue="default", max_retries=0, time_limit=10_000, hooks=True)
def ping(payload: PingPayload) -> dict[str, Any]:
    return payload.model_dump(mode="json")
