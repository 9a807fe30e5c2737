"""Jobs with keys, for the tests of keys (service/domain/job_key.py): each records which key it ran for."""

from __future__ import annotations

from pydantic import BaseModel

import actors  # noqa: F401  (sets the broker up and declares the real jobs first)
from service.worker.typed_actor import job

QUEUE = "test-keys"


class AccountPayload(BaseModel):
    account_id: str
    n: int = 0


@job(AccountPayload, queue=QUEUE, key="account_id")
def per_account(payload: AccountPayload) -> int:
    return payload.n


class PlainPayload(BaseModel):
    n: int = 0


@job(PlainPayload, queue=QUEUE)
def unkeyed(payload: PlainPayload) -> int:
    return payload.n
