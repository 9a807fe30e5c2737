"""The job record as the API, the CLI and other services see it."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from service.domain.states import JobState


class HistoryEntry(BaseModel):
    state: JobState
    at: str
    run: int = 0
    retry: int = 0
    attempt: int | None = None
    error: str | None = None
    note: str | None = None


class JobRecord(BaseModel):
    """Keys are camelCase, as in the seed's API."""

    jobId: str
    actor: str
    queue: str
    state: JobState
    priority: str = "normal"
    #: Who the job is for (a tenant, an account): service/domain/job_key.py. None when it has none.
    key: str | None = None
    progress: int = Field(0, ge=0, le=100)
    progressMessage: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    failedReason: str | None = None
    traceback: str | None = None
    attempts: int = 0
    maxRetries: int | None = None
    createdAt: str
    startedAt: str | None = None
    finishedAt: str | None = None
    updatedAt: str | None = None
    idempotencyKey: str | None = None
    cancelRequested: bool = False
    #: The OpenTelemetry trace of the request (or sender) and the attempts of this job, when tracing is on.
    traceId: str | None = None
    history: list[HistoryEntry] = Field(default_factory=list)

    @classmethod
    def from_redis(cls, fields: dict[str, str], history: list[str]) -> JobRecord:
        def load(name: str) -> Any:
            raw = fields.get(name)
            return json.loads(raw) if raw else None

        return cls(
            jobId=fields["jobId"],
            actor=fields["actor"],
            queue=fields.get("queue", "default"),
            state=JobState(fields["state"]),
            priority=fields.get("priority", "normal"),
            key=fields.get("key"),
            progress=int(float(fields.get("progress", 0))),
            progressMessage=fields.get("progressMessage"),
            data=load("data") or {},
            result=load("result"),
            failedReason=fields.get("failedReason"),
            traceback=fields.get("traceback"),
            attempts=int(fields.get("attempts", 0)),
            maxRetries=int(fields["maxRetries"]) if fields.get("maxRetries") else None,
            createdAt=fields.get("createdAt", ""),
            startedAt=fields.get("startedAt"),
            finishedAt=fields.get("finishedAt"),
            updatedAt=fields.get("updatedAt"),
            idempotencyKey=fields.get("idempotencyKey"),
            cancelRequested=fields.get("cancelRequested") == "1",
            traceId=fields.get("traceId"),
            history=[HistoryEntry.model_validate_json(h) for h in history],
        )
