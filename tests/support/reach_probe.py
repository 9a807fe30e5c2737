"""Run inside a namespace host: whether this process reaches the test's RabbitMQ and Redis. Prints one JSON object.

`python -m tests.support.reach_probe --amqp URL ... --sentinels host:port,... --master NAME --timeout S`: for each
AMQP URL and Sentinel a TCP connect ("connected", "timed out" or the error), then the real thing: an AMQP connection
that publishes with confirms to a queue of its own, and a write and read on the primary the Sentinels name.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import uuid
from urllib.parse import urlsplit

import pika
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel


def connect(host: str, port: int, timeout: float) -> str:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return "connected"
    except TimeoutError:
        return "timed out"
    except OSError as error:
        return f"error: {error}"


def amqp(url: str, timeout: float) -> str:
    params = pika.URLParameters(url)
    params.socket_timeout = params.blocked_connection_timeout = params.stack_timeout = timeout
    params.connection_attempts = 1
    try:
        connection = pika.BlockingConnection(params)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            queue = channel.queue_declare("", exclusive=True).method.queue
            channel.basic_publish("", queue, b"from a namespace", mandatory=True)
            return "ok"
        finally:
            connection.close()
    except (pika.exceptions.AMQPError, OSError) as error:
        return f"error: {error!r}"


def redis_through_sentinels(sentinels: list[tuple[str, int]], master: str, timeout: float) -> str:
    # redis-py retries by default, at each of two levels (Sentinel discovery, then the connection): one try each.
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": Retry(NoBackoff(), 0)}
    finder = Sentinel(sentinels, sentinel_kwargs=options, **options)  # type: ignore[no-untyped-call]
    client = finder.master_for(master, decode_responses=True)  # type: ignore[no-untyped-call]
    key, value = f"reach-probe:{uuid.uuid4().hex}", "from a namespace"
    try:
        client.set(key, value, ex=60)
        return "ok" if client.get(key) == value else "read back something else"
    except redis.RedisError as error:
        return f"error: {error!r}"
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--amqp", nargs="*", default=[])
    parser.add_argument("--sentinels", default="")
    parser.add_argument("--master", default="")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    sentinels = [(h, int(p)) for h, p in (a.rsplit(":", 1) for a in args.sentinels.split(",") if a)]
    connects: dict[str, str] = {}
    sessions: dict[str, str] = {}
    for url in args.amqp:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        connects[f"{parts.hostname}:{parts.port}"] = connect(parts.hostname, parts.port, args.timeout)
        sessions[url] = amqp(url, args.timeout)
    for host, port in sentinels:
        connects[f"{host}:{port}"] = connect(host, port, args.timeout)
    report = {"connect": connects, "amqp": sessions}
    if sentinels:
        report["redis"] = {args.master: redis_through_sentinels(sentinels, args.master, args.timeout)}
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
