"""Test-only job returning a result of the size asked, on a queue of its own ("results"), for MAX_RESULT_BYTES."""

from __future__ import annotations

from pydantic import BaseModel, Field

import actors  # noqa: F401  (sets the broker up and declares the real jobs first)
from service.worker.typed_actor import job


class SizePayload(BaseModel):
    characters: int = Field(ge=0)


@job(SizePayload, queue="results", max_retries=2, retry_delays=[100])
def sized_result(payload: SizePayload) -> str:
    return "x" * payload.characters
