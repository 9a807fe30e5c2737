"""What a test's own Redis and RabbitMQ share: spare ports, a folder of their own, and failing loudly under CI."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

HOST = "127.0.0.1"
#: Below Linux's ephemeral range (32768+), so a client socket of the test cannot take the port while a server is
#: down between kill() and start(); above the ports well-known services use.
PORT_RANGE = (20000, 32000)


class ServerDidNotStart(RuntimeError):
    """The server could not be started (binary missing, port taken, boot too slow); the message says why."""


class CommandFailed(RuntimeError):
    """A command that sets a server or the network up (rabbitmqctl, ip) failed; the message has what it said."""


def run_command(command: list[str], *, timeout: float = 60.0) -> str:
    """Run `command` to its end within `timeout`; its standard output, or CommandFailed naming it and its errors."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise CommandFailed(f"`{' '.join(command)}` took more than {timeout} s") from error
    except OSError as error:
        raise CommandFailed(f"`{' '.join(command)}` could not run: {error}") from error
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        raise CommandFailed(f"`{' '.join(command)}` exited with {done.returncode}: {said}")
    return done.stdout


def spare_port(*, avoid: tuple[int, ...] = ()) -> int:
    """A port in PORT_RANGE that nothing listens on now."""
    for _ in range(200):
        port = random.randrange(*PORT_RANGE)
        if port in avoid:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        return port
    raise ServerDidNotStart(f"no spare port in {PORT_RANGE}")


def own_folder(prefix: str) -> Path:
    """A folder under the system's temporary folder (not pytest's, which other users cannot enter)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


#: The folder of each server names the test process that owns it and the server's process group.
OWNER_FILE = "owner"


def claim(folder: Path, group: int) -> None:
    """Mark the folder as this test process's, its servers in process group `group` (0: none)."""
    (folder / OWNER_FILE).write_text(f"{os.getpid()} {group}\n")


def abandoned(prefix: str) -> Iterator[tuple[Path, int]]:
    """Folders (and process groups) of servers whose test process is gone: killed, its finally never ran."""
    for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            owner, group = (int(n) for n in (folder / OWNER_FILE).read_text().split())
        except (OSError, ValueError):
            continue
        try:
            os.kill(owner, 0)
            continue  # its test is still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        yield folder, group


def remove_abandoned(prefix: str) -> None:
    """Servers of a killed test run would otherwise run and hold memory and ports for ever."""
    for folder, group in abandoned(prefix):
        if group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        remove_folder(folder)


def remove_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(folder)


def log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"(no log at {path})"


def fail_or_skip(error: Exception) -> None:
    """Under CI a server that cannot start fails the test with the reason; on a laptop it skips it."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"own server did not start: {error}", pytrace=False)
    pytest.skip(f"own server did not start: {error}")


class Startable(Protocol):
    def start(self) -> object: ...

    def close(self) -> None: ...


S = TypeVar("S", bound=Startable)


@contextlib.contextmanager
def started(server: S) -> Iterator[S]:
    """`server` started (on failure closed, then the test fails under CI or skips, with the reason), closed after."""
    try:
        server.start()
    except BaseException as error:
        server.close()
        if isinstance(error, ServerDidNotStart):
            fail_or_skip(error)
        raise
    try:
        yield server
    finally:
        server.close()
