"""A redis-server of a test's own, on a spare port, that the test may kill, restart or fill (never the shared one)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time

import pytest
import redis

from tests.support.own_servers import (
    HOST,
    ServerDidNotStart,
    claim,
    own_folder,
    remove_abandoned,
    remove_folder,
    spare_port,
)

#: The folders of the test's servers start so; servers of a killed test run are found by it.
FOLDER_PREFIX = "own-redis-"


class OwnRedis:
    """`redis-server` on 127.0.0.1:<spare port>, data under a temporary folder, removed by `close()`.

    `also_listen`: a second address (of this machine) it listens on as well, same port. `sentinel`: run as a Sentinel
    (`redis-server <its own config file> --sentinel`; Sentinels rewrite that file); `args` then hold its `--sentinel`
    options.
    """

    def __init__(self, *args: str, also_listen: str | None = None, sentinel: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("CI") == "true":
                raise ServerDidNotStart("redis-server is not installed")
            pytest.skip("redis-server is not installed")
        remove_abandoned(FOLDER_PREFIX)
        self.binary = binary
        self.port = spare_port()  # below the range the OS hands to client sockets, so a restart finds it free
        self.folder = own_folder(FOLDER_PREFIX)
        self.args = list(args)
        self.addresses = [HOST] if also_listen is None else [HOST, also_listen]
        self.sentinel = sentinel
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> OwnRedis:
        command = [self.binary]
        if self.sentinel:
            config = self.folder / "sentinel.conf"
            config.touch()
            command += [str(config), "--sentinel"]
        command += ["--port", str(self.port), "--bind", *self.addresses, "--dir", str(self.folder)]
        command += ["--save", "", "--appendonly", "no"]
        if len(self.addresses) > 1:
            # Protected mode refuses clients from any but loopback addresses when there is no password.
            command += ["--protected-mode", "no"]
        command += self.args
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        claim(self.folder, self.proc.pid)
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                probe.ping()
                return self
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (self.folder / "redis.log").read_text()
                    raise ServerDidNotStart(f"own redis-server did not start: {log_text}") from None
                time.sleep(0.05)
            finally:
                probe.close()

    def kill(self) -> None:
        """SIGKILL: the server vanishes at once, as in a crash (with any child it forked to save or sync)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

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
        remove_folder(self.folder)

    stop = close

    def __enter__(self) -> OwnRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
