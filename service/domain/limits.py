"""What an actor's limit options mean: per key (`key_concurrency=2`, `key_rate_limit="10/s"`, `throttle="5/m"` with
`throttle_mode`) and per actor (`concurrency_limit`, `rate_limit`, split by `concurrency_key` / `rate_limit_key`), each
one `Limit`, checked when the actor is declared, with JOB_LIMITS's overrides applied.

A job over a limit waits (goes back to the queue delayed: no attempt used, not failed), except under a throttle in
"drop" mode, where it ends `cancelled` "throttled: ...". A per-key limit holds a job with no key not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dramatiq.middleware import MiddlewareError

from service.domain.rates import parse_rate

#: Actor options, per key of the job (service/domain/job_key.py).
KEY_CONCURRENCY = "key_concurrency"
KEY_RATE_LIMIT = "key_rate_limit"
THROTTLE = "throttle"
THROTTLE_MODE = "throttle_mode"
#: Actor options, per actor, or per what the function in the matching `*_key` option returns for a message.
CONCURRENCY_LIMIT = "concurrency_limit"
CONCURRENCY_KEY = "concurrency_key"
RATE_LIMIT = "rate_limit"
RATE_LIMIT_KEY = "rate_limit_key"
#: The option holding the function that splits each per-actor limit.
SPLIT_BY = {CONCURRENCY_LIMIT: CONCURRENCY_KEY, RATE_LIMIT: RATE_LIMIT_KEY}

#: Every option the limits middleware declares to Dramatiq.
OPTIONS = frozenset(
    {KEY_CONCURRENCY, KEY_RATE_LIMIT, THROTTLE, THROTTLE_MODE, CONCURRENCY_LIMIT, CONCURRENCY_KEY, RATE_LIMIT,
     RATE_LIMIT_KEY}
)  # fmt: skip
#: What JOB_LIMITS may set: values, not the functions that split a limit.
OVERRIDABLE = frozenset({KEY_CONCURRENCY, KEY_RATE_LIMIT, THROTTLE, THROTTLE_MODE, CONCURRENCY_LIMIT, RATE_LIMIT})

#: The words a throttle dropped job is recorded with start so (failedReason).
THROTTLED = "throttled"


class Kind(StrEnum):
    #: At most `count` jobs running at once; a slot lives as long as the job's lease.
    CONCURRENCY = "concurrency"
    #: At most `count` starts in any window of `period_ms` (a sliding window).
    RATE = "rate"


class Split(StrEnum):
    """What one limit's count is kept per."""

    #: Per actor (no split).
    ACTOR = "actor"
    #: Per job key: a job without a key is not held.
    JOB_KEY = "job key"
    #: Per what the actor's `concurrency_key` / `rate_limit_key` function returns for the message.
    FUNCTION = "function"


class InvalidLimit(MiddlewareError, ValueError):
    """A limit option (or a JOB_LIMITS entry) that makes no sense. A MiddlewareError, so that Dramatiq lets it out of
    the declaration hook and the actor's module fails to import, naming the actor and the option."""


@dataclass(frozen=True)
class Limit:
    #: The option that declared it: also its scope in Redis (`jobs:limit:<scope>:<name>`).
    scope: str
    kind: Kind
    count: int
    period_ms: int = 0  #: RATE only
    split: Split = Split.ACTOR
    #: Over the limit, the job ends cancelled instead of waiting (a throttle in "drop" mode).
    drops: bool = False
    #: As written on the actor, for logs and reasons ("2", "10/s").
    spec: str = ""

    def reason(self, key: str) -> str:
        """What a dropped job is recorded with (failedReason)."""
        return f"{THROTTLED}: at most {self.spec} starts per key (key {key})"

    def describe(self) -> str:
        return f"{self.scope}={self.spec}"


def _count(option: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidLimit(f"{option}={value!r}: must be a positive whole number")
    return value


def _rate(option: str, value: object) -> tuple[int, int]:
    if not isinstance(value, str):
        raise InvalidLimit(f"{option}={value!r}: must be a rate such as '10/s', '30/m' or '5/10s'")
    try:
        return parse_rate(value)
    except ValueError:
        raise InvalidLimit(f"{option}={value!r}: must be a rate such as '10/s', '30/m' or '5/10s'") from None


def limits_of(options: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> tuple[Limit, ...]:
    """An actor's limits from its options, each overridden by JOB_LIMITS's entry for it. Raises InvalidLimit naming
    the option; a limit set to None (or 0 by an override) is off."""
    merged = {**options, **(overrides or {})}
    found: list[Limit] = []
    for option, split in ((CONCURRENCY_LIMIT, Split.ACTOR), (KEY_CONCURRENCY, Split.JOB_KEY)):
        value = merged.get(option)
        if value is None or (value == 0 and option in (overrides or {})):
            continue
        if merged.get(SPLIT_BY.get(option, "")) is not None:
            split = Split.FUNCTION
        found.append(Limit(option, Kind.CONCURRENCY, _count(option, value), split=split, spec=str(value)))
    for option, split in ((RATE_LIMIT, Split.ACTOR), (KEY_RATE_LIMIT, Split.JOB_KEY), (THROTTLE, Split.JOB_KEY)):
        value = merged.get(option)
        if value is None or value == "":
            continue
        if merged.get(SPLIT_BY.get(option, "")) is not None:
            split = Split.FUNCTION
        count, period_ms = _rate(option, value)
        drops = option == THROTTLE and _mode(merged.get(THROTTLE_MODE, "delay")) == "drop"
        found.append(Limit(option, Kind.RATE, count, period_ms, split, drops, str(value)))
    if THROTTLE_MODE in merged and merged.get(THROTTLE) is None:
        _mode(merged[THROTTLE_MODE])
    for option in SPLIT_BY.values():
        if merged.get(option) is not None and not callable(merged[option]):
            raise InvalidLimit(f"{option}={merged[option]!r}: must be a function of the message, returning a str")
    return tuple(found)


def _mode(value: object) -> str:
    if value not in ("delay", "drop"):
        raise InvalidLimit(f"{THROTTLE_MODE}={value!r}: must be 'delay' or 'drop'")
    return str(value)


def check_overrides(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """JOB_LIMITS as read from the environment: {actor: {option: value}}, each value as the option takes it. Raises
    ValueError naming the actor and option."""
    for actor, options in value.items():
        if not isinstance(options, Mapping):
            raise ValueError(f'{actor}: must map limit options to values, such as {{"key_concurrency": 4}}')
        unknown = set(options) - OVERRIDABLE
        if unknown:
            raise ValueError(
                f"{actor}.{sorted(unknown)[0]}: not a limit option (one of {', '.join(sorted(OVERRIDABLE))})"
            )
        for option, setting in options.items():
            try:
                if option in (KEY_CONCURRENCY, CONCURRENCY_LIMIT):
                    if setting != 0:
                        _count(option, setting)
                elif option == THROTTLE_MODE:
                    _mode(setting)
                elif setting is not None and setting != "":
                    _rate(option, setting)
            except InvalidLimit as error:
                raise ValueError(f"{actor}.{error}") from None
    return value
