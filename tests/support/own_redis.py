"""A redis-server of the test's own on a spare port, which the test may SIGKILL, stop and start again."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.support.own_servers import HOST, ServerDidNotStart, log_tail, own_folder, remove_folder, spare_port


class OwnRedis:
    """`redis-server` with its data in a folder of its own; `start()` after `kill()` reuses the port and the data.

    `appendonly=True` is the persistence the README recommends (AOF, fsync every second)."""

    def __init__(self, *, appendonly: bool = True) -> None:
        self.appendonly = appendonly
        self.folder = own_folder("own-redis-")
        self.port = spare_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.folder / "redis.log"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerDidNotStart("redis-server is not installed (Debian package redis-server)")
        aof = ["--appendonly", "yes", "--appendfsync", "everysec"]
        persistence = aof if self.appendonly else ["--appendonly", "no"]
        return [
            binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--dir", str(self.folder),
            "--save", "",
            *persistence,
            "--daemonize", "no",
            "--logfile", str(self.log),
        ]  # fmt: skip

    def start(self, timeout: float = 20.0) -> OwnRedis:
        """Start (or start again) and return once it answers PING (with an AOF, once the data is loaded)."""
        assert not self.running(), "already running"
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(host=HOST, port=self.port, socket_connect_timeout=1, socket_timeout=2)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise ServerDidNotStart(f"redis-server exited with {self.proc.returncode}:\n{log_tail(self.log)}")
                try:
                    if client.ping():
                        return self
                except redis.RedisError:
                    pass  # not listening yet, or still loading its AOF
                if time.monotonic() > deadline:
                    self.kill()
                    raise ServerDidNotStart(f"redis-server not answering after {timeout} s:\n{log_tail(self.log)}")
                time.sleep(0.05)
        finally:
            client.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last fsync, as a crash or the out-of-memory killer would."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: Redis flushes its AOF and exits."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(30)

    def close(self) -> None:
        self.kill()
        remove_folder(self.folder)

    def __enter__(self) -> OwnRedis:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
