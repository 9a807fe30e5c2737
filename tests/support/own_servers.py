"""What a test's own Redis and RabbitMQ share: spare ports, a folder of their own, and failing loudly under CI."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

HOST = "127.0.0.1"
#: Below Linux's ephemeral range (32768+), so a client socket of the test cannot take the port while a server is
#: down between kill() and start(); above the ports well-known services use.
PORT_RANGE = (20000, 32000)


class ServerDidNotStart(RuntimeError):
    """The server could not be started (binary missing, port taken, boot too slow); the message says why."""


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
