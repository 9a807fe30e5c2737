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


def _rabbitmqctl(*args: str) -> None:
    tool = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    subprocess.run([tool, "-q", *args], check=True, capture_output=True, timeout=60)


def create_vhost() -> str:
    vhost = f"jobs-test-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return vhost


def delete_vhost(vhost: str) -> None:
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        _rabbitmqctl("delete_vhost", vhost)


def claim_redis_db(run_id: str) -> int:
    """Take the first database 1..15 that no other live run holds; the lock expires if a run dies."""
    for db in range(1, 16):
        client = redis.Redis(host=HOST, port=6379, db=db)
        if client.set(LOCK_KEY, run_id, nx=True, ex=3 * 3600):
            for key in client.scan_iter(count=1000):
                if key != LOCK_KEY.encode():
                    client.delete(key)
            return db
    raise RuntimeError("no free Redis database among 1..15 for this test run")


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
    run_id = uuid.uuid4().hex
    vhost = create_vhost()
    db = claim_redis_db(run_id)
    os.environ["RABBITMQ_URL"] = f"amqp://guest:guest@{HOST}:5672/{vhost}"
    os.environ["REDIS_URL"] = f"redis://{HOST}:6379/{db}"
    return vhost, db
