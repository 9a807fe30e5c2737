"""Each test run gets its own RabbitMQ vhost and Redis database, so runs on one machine never meet."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import uuid

import redis

HOST = "127.0.0.1"
LOCK_KEY = "jobservice:test-run-lock"


def reachable(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2):
            return True
    except OSError:
        return False


def require_servers() -> None:
    missing = [name for name, port in (("RabbitMQ", 5672), ("Redis", 6379)) if not reachable(port)]
    if missing:
        raise RuntimeError(f"{' and '.join(missing)} not answering on {HOST}; run .ci/services")


VHOST_PREFIX = "jobs-test-"
CLAIM_TTL_S = 2 * 3600
#: Claims written before owners were recorded lasted 3 h; a run takes minutes, so one older than 20 min is stale.
OLD_CLAIM_TTL_S = 3 * 3600
OLD_CLAIM_STALE_AFTER_S = 1200


def _rabbitmqctl(*args: str) -> str:
    tool = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    return subprocess.run([tool, "-q", *args], check=True, capture_output=True, text=True, timeout=60).stdout


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _abandoned(owner: str, ttl: int) -> bool:
    """A claim made on this machine by a process that no longer exists (a run that was killed) is abandoned."""
    host, _, pid = owner.rpartition(":")
    if not pid.isdigit() or not host:
        return ttl < OLD_CLAIM_TTL_S - OLD_CLAIM_STALE_AFTER_S
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_abandoned_vhosts() -> None:
    """Vhosts of killed runs would otherwise keep their queues and messages in RabbitMQ for ever."""
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        for name in _rabbitmqctl("list_vhosts", "name").split():
            parts = name[len(VHOST_PREFIX) :].split("--")
            if name.startswith(VHOST_PREFIX) and len(parts) == 3 and _abandoned(f"{parts[0]}:{parts[1]}", 0):
                delete_vhost(name)


def create_vhost() -> str:
    # The owner's host and pid are in the name, so a later run can tell whether it was abandoned.
    vhost = f"{VHOST_PREFIX}{socket.gethostname()}--{os.getpid()}--{uuid.uuid4().hex[:6]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return vhost


def delete_vhost(vhost: str) -> None:
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        _rabbitmqctl("delete_vhost", vhost)


def claim_redis_db(run_id: str) -> int:
    """Take the first database 1..15 that no live run holds. A claim names its owner's host and pid, so the
    claim of a run that was killed is taken over at once instead of blocking the database until it expires."""
    owner = f"{_owner()}:{run_id}"
    for db in range(1, 16):
        client = redis.Redis(host=HOST, port=6379, db=db, decode_responses=True)
        if not client.set(LOCK_KEY, owner, nx=True, ex=CLAIM_TTL_S):
            held = client.get(LOCK_KEY) or ""
            holder = held.rsplit(":", 1)[0] if held.count(":") >= 2 else held
            if not _abandoned(holder, client.ttl(LOCK_KEY)):
                continue
            # Compare-and-set, so two runs taking over the same stale claim cannot both win.
            with client.pipeline() as pipe:
                try:
                    pipe.watch(LOCK_KEY)
                    if pipe.get(LOCK_KEY) != held:
                        continue
                    pipe.multi()
                    pipe.set(LOCK_KEY, owner, ex=CLAIM_TTL_S)
                    pipe.execute()
                except redis.WatchError:
                    continue
        for key in client.scan_iter(count=1000):
            if key != LOCK_KEY:
                client.delete(key)
        return db
    raise RuntimeError("no free Redis database among 1..15 for this test run (15 live test runs?)")


def release_redis_db(db: int) -> None:
    client = redis.Redis(host=HOST, port=6379, db=db)
    client.flushdb()


def flush_except_lock(client: redis.Redis) -> None:
    for key in client.scan_iter(count=1000):
        if key not in (LOCK_KEY, LOCK_KEY.encode()):
            client.delete(key)


def isolate() -> tuple[str, int]:
    """Point this process (and every process it starts) at a private vhost and Redis DB."""
    require_servers()
    remove_abandoned_vhosts()
    run_id = uuid.uuid4().hex
    vhost = create_vhost()
    db = claim_redis_db(run_id)
    os.environ["RABBITMQ_URL"] = f"amqp://guest:guest@{HOST}:5672/{vhost}"
    os.environ["REDIS_URL"] = f"redis://{HOST}:6379/{db}"
    return vhost, db
