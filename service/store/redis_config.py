"""At the start of every process: warn when Redis may drop what the job store wrote (eviction, no persistence)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

logger = logging.getLogger("service.redis")

#: The only eviction policy under which Redis never drops a job record, a lease or an idempotency key.
SAFE_POLICY = "noeviction"


@dataclass(frozen=True)
class Finding:
    setting: str  #: the Redis setting at fault, as CONFIG names it
    problem: str  #: one sentence: what is set, what it breaks, and the fix


def findings(client: redis.Redis) -> list[Finding]:
    """What is unsafe in this Redis's settings; one finding saying so when they cannot be read."""
    try:
        policy = _config(client, "maxmemory-policy")
        appendonly = _config(client, "appendonly")
        save = _config(client, "save")
    except redis.ResponseError as error:  # CONFIG renamed or disabled (managed Redis), or not allowed by an ACL
        return [
            Finding(
                "CONFIG",
                f"could not check Redis's eviction policy and persistence ({error}): make sure it runs with "
                f"maxmemory-policy {SAFE_POLICY} and appendonly yes (appendfsync everysec) or RDB snapshots",
            )
        ]
    found = []
    if policy != SAFE_POLICY:
        found.append(
            Finding(
                "maxmemory-policy",
                f"Redis maxmemory-policy is {policy}: when full it evicts keys, and an evicted job record, lease or "
                f"Idempotency-Key breaks the service's guarantees; set maxmemory-policy {SAFE_POLICY}",
            )
        )
    if appendonly != "yes" and not save.strip():
        found.append(
            Finding(
                "appendonly",
                'Redis persists nothing (appendonly no, save ""): a restart loses every job record, cancellation and '
                "Idempotency-Key, and a cancelled job can run again; set appendonly yes with appendfsync everysec "
                '(or an RDB schedule, e.g. save "60 1000")',
            )
        )
    return found


def warn_if_unsafe(client: redis.Redis, process: str) -> list[Finding]:
    """One warning line per unsafe setting; none when all is well. Never stops the process: Redis being away at
    start is for the readiness probe and the first call to report."""
    try:
        found = findings(client)
    except redis.RedisError as error:
        logger.warning("%s: could not check Redis's eviction policy and persistence: %s", process, error)
        return []
    for finding in found:
        logger.warning("%s: %s", process, finding.problem, extra={"event": "redis_unsafe"})
    if not found:
        logger.info("%s: Redis settings checked: maxmemory-policy %s, persistence on", process, SAFE_POLICY)
    return found


def _config(client: redis.Redis, name: str) -> str:
    answer = client.config_get(name)
    return str(answer.get(name, "")) if isinstance(answer, dict) else ""
