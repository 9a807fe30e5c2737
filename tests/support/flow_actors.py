"""Jobs with flow control per key, for the tests of singleton and debounce (service/domain/flow_control.py): each
records, in Redis, which payload ran for which key."""

from __future__ import annotations

import time

from pydantic import BaseModel

import actors  # noqa: F401  (sets the broker up and declares the real jobs first)
from service.bootstrap import redis_client
from service.domain.errors import PermanentError
from service.worker.typed_actor import job

QUEUE = "test-flow"
#: The debounce time of `debounced`: long enough that sends a few hundred ms apart fall within it on a busy machine.
DEBOUNCE_MS = 1500


def runs_key(actor: str, key: str) -> str:
    """A list of the `n` of every run of `actor` for `key`, in the order they started."""
    return f"test:flow:{actor}:{key}"


class AccountPayload(BaseModel):
    account_id: str = ""
    n: int = 0
    seconds: float = 0.0
    fail: bool = False


@job(AccountPayload, queue=QUEUE, key="account_id", singleton=True, max_retries=0)
def one_at_a_time(payload: AccountPayload) -> int:
    redis_client.rpush(runs_key("one_at_a_time", payload.account_id), payload.n)
    time.sleep(payload.seconds)
    if payload.fail:
        raise PermanentError("asked to fail")
    return payload.n


@job(AccountPayload, queue=QUEUE, key="account_id", debounce=DEBOUNCE_MS, max_retries=0)
def debounced(payload: AccountPayload) -> int:
    redis_client.rpush(runs_key("debounced", payload.account_id), payload.n)
    return payload.n


@job(AccountPayload, queue=QUEUE, key="account_id", max_retries=0)
def keyed(payload: AccountPayload) -> int:
    """A job with a key and no flow control: what the benchmark compares the others with."""
    return payload.n
