"""Another service's process: imports the jobs and sends `tally` jobs with `actor.send()`, through Dramatiq's own
broker (its retries and reconnects), as the README's "From another service" has it.

`python -m tests.support.stop_file_sender RUN MS PAUSE_S STOP_FILE` sends until STOP_FILE exists, one job every PAUSE_S,
and prints one line per send: `sent <job id> <time>` once RabbitMQ confirmed it, `failed <time> <error>` when
Dramatiq gave up. RABBITMQ_URL, RABBITMQ_QUEUE_TYPE and REDIS_URL come from the environment.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.support.chaos_actors import tally


def main(run: str, ms: int, pause_s: float, stop_file: Path) -> None:
    while not stop_file.exists():
        try:
            message = tally.send(run=run, ms=ms)
        except Exception as error:  # reported, and the next send tried: the test counts what was confirmed
            print(f"failed {time.time():.3f} {type(error).__name__}: {error}", flush=True)
        else:
            print(f"sent {message.message_id} {time.time():.3f}", flush=True)
        time.sleep(pause_s)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]))
