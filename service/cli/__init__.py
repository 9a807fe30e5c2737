"""The `jobs` command line: the service layer, for people at a terminal and for scripts (`--json`)."""

from service.cli.main import main

__all__ = ["main"]
