"""Flow control per key: what `singleton=True` and `debounce="5s"` on an actor mean, the message options that carry
them, and the words a refused or superseded job is recorded with.

- singleton: at most one job of the actor per key is queued, delayed or running; a new one is refused with the id of
  the one that holds the key (a claim in Redis, freed as that job ends).
- debounce (trailing): the job runs once, that long after the last send for its key, with the last payload; every
  send is a job of its own, delayed by the debounce time, and each but the latest ends cancelled as superseded.

Both act per key (service/domain/job_key.py): a job with no key is held by neither.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dramatiq.middleware import MiddlewareError

#: Actor options (on @job or any Dramatiq actor of this broker).
SINGLETON = "singleton"
DEBOUNCE = "debounce"

#: Message option: the singleton claim ("<actor>:<key>") this job took as it was sent, so its later publishes (a
#: retry, a delayed message coming due) need not take it again; the record keeps it as `singleton`.
CLAIM = "singleton_claim"
#: Message option: when this send was made (µs since the epoch: two sends of one process never tie), stamped by
#: whoever published it delayed by the debounce time. A message without it was sent by a plain Dramatiq client, not
#: delayed: the worker delays it first, as sent when the message was made.
SENT_AT = "debounce_sent_us"

#: A claim whose job has no record yet is that job's for this long: the claim is taken before the record is written
#: (the API), before the message is published and the record written after it (`actor.send()`), or by the worker
#: just before the record of a plain sender's job. Past it, a claim without a record is stale (its sender died in
#: between, or the record was lost), and the next job of the key takes it over: no key is blocked for ever.
CLAIM_PENDING_MS = 30_000
#: The latest send of a key is kept this long past its due time, so a superseded message that comes due late (its
#: workers were away, its queue long) still finds it and is cancelled; one key of about 100 bytes per actor and key.
LATEST_KEPT_MS = 86_400_000

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")


@dataclass(frozen=True)
class FlowRules:
    """An actor's flow control, from its options."""

    singleton: bool = False
    debounce_ms: int | None = None

    def claim_name(self, actor: str, key: str | None) -> str | None:
        """The singleton claim a job of `actor` and `key` takes; None when it takes none (not singleton, no key)."""
        return f"{actor}:{key}" if self.singleton and key is not None else None

    def debounces(self, key: str | None) -> bool:
        return self.debounce_ms is not None and key is not None


NONE = FlowRules()


def duration_ms(value: object) -> int:
    """`debounce=` as milliseconds: a whole number of ms, or "500ms", "5s", "2m", "1h". Raises InvalidFlowOption."""
    if isinstance(value, int) and not isinstance(value, bool):
        ms = value
    elif isinstance(value, str) and (match := _DURATION.match(value.lower())):
        ms = round(float(match.group(1)) * _UNITS[match.group(2)])
    else:
        raise InvalidFlowOption(f"debounce={value!r}: give milliseconds (5000) or a duration such as '500ms', '5s'")
    if ms < 1:
        raise InvalidFlowOption(f"debounce={value!r}: must be at least 1 ms")
    return ms


def rules_of(options: Mapping[str, Any]) -> FlowRules:
    """An actor's flow control from its options; raises InvalidFlowOption for a value that makes no sense."""
    singleton, debounce = options.get(SINGLETON, False), options.get(DEBOUNCE)
    if not isinstance(singleton, bool):
        raise InvalidFlowOption(f"singleton={singleton!r}: must be True or False")
    if singleton and debounce is not None:
        # Refusing every send after the first would keep the first payload; debounce keeps the last one. Pick one.
        raise InvalidFlowOption("singleton and debounce on one actor: choose one")
    if not singleton and debounce is None:
        return NONE
    return FlowRules(singleton, None if debounce is None else duration_ms(debounce))


_last_send_us = 0
_send_lock = threading.Lock()


def send_time_us() -> int:
    """Now, in µs, later than any send time this process stamped before: its sends are ranked in the order made."""
    global _last_send_us
    with _send_lock:
        _last_send_us = max(time.time_ns() // 1000, _last_send_us + 1)
        return _last_send_us


def singleton_reason(holder: str, key: str) -> str:
    """What a job refused by a singleton claim is recorded with (failedReason)."""
    return f"singleton: job {holder} of key {key} is already queued or running"


def debounced_reason(latest: str) -> str:
    """What a superseded debounced job is recorded with (failedReason)."""
    return f"debounced: superseded by job {latest}"


class InvalidFlowOption(MiddlewareError, ValueError):
    """An actor's `singleton` or `debounce` makes no sense. A MiddlewareError, so that Dramatiq lets it out of the
    declaration hook and the actor's module fails to import, naming it."""


class SingletonTaken(MiddlewareError):
    """Raised by `actor.send()` of a singleton actor when another job holds the key; nothing was sent."""

    def __init__(self, actor: str, key: str, job_id: str) -> None:
        super().__init__(singleton_reason(job_id, key))
        self.actor = actor
        self.key = key
        #: The job that holds the key: queued, delayed or running.
        self.job_id = job_id


class FlowUnchecked(MiddlewareError):
    """Raised by `actor.send()` when a singleton claim cannot be checked (Redis away): nothing was sent."""
