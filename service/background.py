"""A loop in a daemon thread of its own that ends when asked to: the shape the service's background loops share (the
worker's heartbeat, its job-log writer, the scheduler's event export)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class BackgroundLoop:
    """Runs `loop()` in a daemon thread named `name`. The loop returns once `stopping` is set, and pauses with
    `stopping.wait(s)` (or on `wake`, which stop() sets too), so a stop ends a pause at once. Each start has an
    event of its own: a loop reads `stopping` once, as it begins, and keeps it."""

    def __init__(self, name: str, loop: Callable[[], None], *, wake: threading.Event | None = None) -> None:
        self.name = name
        self.stopping = threading.Event()
        self.wake = wake
        self._loop = loop
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # A new event, not the old one cleared: a thread of an earlier start that outlived its stop(wait_s) still
        # holds the old event, set, and ends once it reads it instead of running on beside the new one.
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, wait_s: float = 0.0) -> bool:
        """Ask the loop to end, then wait up to `wait_s` for it. True once it has ended (or never started)."""
        self.stopping.set()
        if self.wake is not None:
            self.wake.set()
        thread = self._thread
        if thread is None:
            return True
        if wait_s > 0:
            thread.join(wait_s)
        return not thread.is_alive()
