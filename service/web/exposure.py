"""An API without API_TOKEN is open to whoever reaches its port: say so at start, and refuse to start that way on an
address other machines can reach unless API_OPEN=true says it is meant."""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from service.settings import Settings

logger = logging.getLogger("service.api")


@dataclass(frozen=True)
class Bind:
    """Where the web process listens, as its command line says."""

    address: str
    #: Only this machine can connect: a loopback address, or a Unix socket.
    local: bool


def _is_uvicorn(argv: Sequence[str]) -> bool:
    program = Path(argv[0]) if argv else Path()
    return program.name == "uvicorn" or program.parts[-2:] == ("uvicorn", "__main__.py")


def _local(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other name may resolve to an address others reach


def uvicorn_bind(argv: Sequence[str]) -> Bind | None:
    """The bind of `uvicorn ...` or `python -m uvicorn ...`, read with uvicorn's own option parser (so `--host`,
    `UVICORN_HOST` and the default mean here what they mean to uvicorn); None when this process is not uvicorn's
    command (tests in-process, `uvicorn.run()` from code, other servers)."""
    if not _is_uvicorn(argv):
        return None
    from uvicorn.main import main  # only in a uvicorn process, which has it imported already

    try:
        params = main.make_context("uvicorn", list(argv[1:]), resilient_parsing=True).params
    except Exception:  # uvicorn parsed this very command line before importing us; this does not happen
        return None
    if params.get("uds"):
        return Bind(f"unix:{params['uds']}", local=True)
    if params.get("fd") is not None:
        return Bind(f"file descriptor {params['fd']}", local=False)  # a socket handed over: cannot tell, so not local
    host = str(params.get("host") or "")
    return Bind(host, local=_local(host))


def check_exposure(settings: Settings, argv: Sequence[str] = sys.argv) -> None:
    """At import of the web app. Exits with status 2 and one line when an open API would listen beyond loopback."""
    if settings.api_token:
        return
    bind = uvicorn_bind(argv)
    if bind is not None and not bind.local and not settings.api_open:
        print(
            f"refusing to start: API_TOKEN is empty and the web process listens on {bind.address}, which other "
            "machines can reach; set API_TOKEN, bind 127.0.0.1, or set API_OPEN=true if an open API is meant",
            file=sys.stderr,
        )
        raise SystemExit(2)
    where = f" on {bind.address}" if bind else ""
    logger.warning(
        "API_TOKEN is empty: the API is open, anyone who reaches this web process%s can enqueue, cancel, retry, "
        "pause and purge; set API_TOKEN",
        where,
    )
