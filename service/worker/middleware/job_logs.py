"""Worker processes keep each job's own log lines with the job (service/worker/job_log_capture.py does the work)."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from service.worker.job_log_capture import JobLogCapture


class JobLogs(Middleware):
    """Installs the capture handler when a worker process boots; tells it when a job ends."""

    def __init__(self, capture: JobLogCapture) -> None:
        self.capture = capture

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        if self.capture.keep == 0:
            return  # JOB_LOG_LINES=0: capture is off
        logging.getLogger().addHandler(self.capture)
        self.capture.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.capture.stop()  # after the worker threads: what the last jobs logged is written too

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self.capture.job_ended(message.message_id)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.capture.job_ended(message.message_id)
