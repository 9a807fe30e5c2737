"""A redis-server of a test's own, on a spare port, that the test may kill, restart or fill (never the shared one)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from tests.support.own_servers import spare_port


class OwnRedis:
    """`redis-server` on 127.0.0.1:<spare port>, data under a temporary folder, removed by `close()`."""

    def __init__(self, *args: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("CI") == "true":
                raise RuntimeError("redis-server is not installed")
            pytest.skip("redis-server is not installed")
        self.binary = binary
        self.port = spare_port()  # below the range the OS hands to client sockets, so a restart finds it free
        self.folder = Path(tempfile.mkdtemp(prefix="own-redis-"))
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> OwnRedis:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        command += ["--save", "", "--appendonly", "no", *self.args]
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                probe.ping()
                return self
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (self.folder / "redis.log").read_text()
                    raise RuntimeError(f"own redis-server did not start: {log_text}") from None
                time.sleep(0.05)
            finally:
                probe.close()

    def kill(self) -> None:
        """SIGKILL: the server vanishes at once, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, **options)  # type: ignore[arg-type]

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

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    stop = close

    def __enter__(self) -> OwnRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
