"""The `jobs` command line: the service layer, for people at a terminal and for scripts (`--json`).

May import `service.ops`, `service.domain`, the foundation and the composition root (`service.bootstrap`).
"""

from service.cli.main import main

__all__ = ["main"]
