"""A redis-server of a test's own on a spare port, to fill, misconfigure or kill (the shared one is never touched)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from tests.support.web import free_port


class OwnRedis:
    """`redis-server` with the given settings (no persistence unless they say otherwise), data in a temp folder."""

    def __init__(self, *settings: str) -> None:
        self.settings = list(settings)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = Path(tempfile.mkdtemp(prefix="own-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10) -> OwnRedis:
        server = shutil.which("redis-server")
        if server is None:
            message = "redis-server is not installed"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        defaults = ["--save", "", "--appendonly", "no"]
        command = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), *defaults]
        self.proc = subprocess.Popen(
            [*command, *self.settings], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.folder
        )
        client = self.client()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server {' '.join(self.settings)} did not start") from None
                time.sleep(0.05)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5)

    def fill(self, megabytes: int = 4) -> None:
        """Past its maxmemory for good: write `megabytes` of data, then lower maxmemory under what is used (this
        server only). Filling up to the limit instead leaves Redis at its edge, where a small write sometimes fits."""
        client = self.client()
        client.eval(
            "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'filler:' .. i, string.rep('x', 1048576)) end",
            0,
            megabytes,
        )
        client.config_set("maxmemory", "1mb")
        client.config_set("maxmemory-policy", "noeviction")
        try:
            client.set("filler:probe", "x")
        except redis.exceptions.OutOfMemoryError:
            return
        raise AssertionError("Redis took a write past its maxmemory")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> OwnRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
