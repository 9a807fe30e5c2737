"""Another service sending `tally` jobs with `actor.send()`, as the README's "Other services" do: it imports the jobs
with the service's own variables (RABBITMQ_URL, REDIS_URL, REDIS_SENTINELS...) and sends at a steady rate, printing
each message id on a line of its own as soon as `send()` returned. Run it as a program:

    python -m tests.support.tally_sender RUN COUNT PER_SECOND [WORK_MS]
"""

from __future__ import annotations

import sys
import time

from tests.support.chaos_actors import tally


def send(run: str, count: int, per_second: float, work_ms: int) -> None:
    started = time.monotonic()
    for n in range(count):
        time.sleep(max(0.0, started + n / per_second - time.monotonic()))
        message = tally.send(run=run, ms=work_ms)
        print(message.message_id, flush=True)


if __name__ == "__main__":
    run, count, per_second = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    send(run, count, per_second, int(sys.argv[4]) if len(sys.argv) > 4 else 20)
