"""Jobs flowing in while a fault is injected: `POST /jobs/tally` through the real app in a thread of the test, and
`actor.send()` from a process of its own (tests/support/stop_file_sender.py), each noting what was confirmed, when.
Shared by the RabbitMQ cluster scenario (tests/reliability/cluster_runs.py) and the worker-host cuts
(tests/reliability/host_cuts.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from service.ops.jobs import Jobs
from tests.reliability.api_client import api_using
from tests.support.workers import ROOT


@dataclass
class Sent:
    """Jobs confirmed by one sender (the API's 202, or actor.send() returning), with when."""

    at: dict[str, float] = field(default_factory=dict)
    refused: int = 0  #: answers other than 202, or sends Dramatiq gave up on

    def after(self, moment: float) -> list[str]:
        return [job_id for job_id, at in self.at.items() if at > moment]

    def first_after(self, moment: float) -> float | None:
        later = [at for at in self.at.values() if at > moment]
        return min(later) - moment if later else None


class SenderProcess:
    """`actor.send()` in a process of its own (tests/support/stop_file_sender.py), one job every `pause_s`; `env`
    names the servers (RABBITMQ_URL, REDIS_URL, ...) as the service's own variables do."""

    def __init__(self, run: str, env: dict[str, str], *, ms: int, pause_s: float) -> None:
        folder = Path(tempfile.mkdtemp(prefix="tally-sender-"))
        self.stop_file = folder / "stop"
        self.log = folder / "sent.log"
        sender = "tests.support.stop_file_sender"
        command = [sys.executable, "-m", sender, run, str(ms), str(pause_s), str(self.stop_file)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def sent(self) -> Sent:
        sent = Sent()
        for line in self.log.read_text(errors="replace").splitlines():
            words = line.split()
            if words[:1] == ["sent"]:
                sent.at[words[1]] = float(words[2])
            elif words[:1] == ["failed"]:
                sent.refused += 1
        return sent

    def stop(self) -> None:
        self.stop_file.touch()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the sender did not stop:\n{self.log.read_text()[-2000:]}") from None


class ApiSender:
    """POST /jobs/tally from a thread, through the real app on a service layer of its own, `per_second` on average:
    `burst` requests back to back, then a pause. Every `long_every`-th job runs `long_ms` instead of `ms`, so some
    are running whenever the fault comes."""

    def __init__(
        self,
        jobs: Jobs,
        run: str,
        *,
        ms: int,
        per_second: float,
        long_every: int = 25,
        long_ms: int = 2000,
        burst: int = 1,
    ) -> None:
        self.jobs = jobs
        self.run = run
        self.ms = ms
        self.pause_s = burst / per_second
        self.long_every = long_every
        self.long_ms = long_ms
        self.burst = burst
        self.sent = Sent()
        self.ms_of: dict[str, int] = {}  #: job id -> how long it was asked to run
        self.answers: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, name="api-sender", daemon=True)

    def start(self) -> ApiSender:
        self._thread.start()
        return self

    def _send(self) -> None:
        with api_using(self.jobs) as api:
            i = 0
            while not self._stop.is_set():
                for _ in range(self.burst):
                    i += 1
                    ms = self.long_ms if self.long_every and i % self.long_every == 0 else self.ms
                    response = api.post("/jobs/tally", json={"run": self.run, "ms": ms})
                    self.answers[response.status_code] += 1
                    if response.status_code == 202:
                        job_id = response.json()["jobId"]
                        self.sent.at[job_id], self.ms_of[job_id] = time.time(), ms
                    else:
                        self.sent.refused += 1
                self._stop.wait(self.pause_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the API sender did not stop"
