"""Worker processes write their log lines to stderr themselves (service.logs.DirectLines)."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import Middleware

from service import logs


class DirectWorkerLogs(Middleware):
    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        # Only now: Dramatiq points sys.stderr at its pipe to the parent before it loads the broker.
        logs.write_lines_directly()
