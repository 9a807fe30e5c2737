"""What only a worker process knows about itself, read when it is asked (a scrape), never written per job.

Busy threads come from the jobs in hand (service/worker/middleware/in_hand.py marks each actor call, for interruptions);
messages held in memory from Dramatiq's own worker queues; memory and CPU from the operating system. Reading them
costs a few dict copies, once per scrape, however many jobs ran. Samples of the processes of one `dramatiq` command
add up.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dramatiq.common import q_name


class _Run(Protocol):
    queue: str


class _Runs(Protocol):
    def runs(self) -> Mapping[int, _Run]: ...


@dataclass
class ProcessSample:
    processes: int = 0  #: worker processes this sample covers
    threads: int = 0  #: worker threads, busy or idle
    busy: Counter[str] = field(default_factory=Counter)  #: queue -> threads running one of its jobs now
    prefetched: Counter[str] = field(default_factory=Counter)  #: queue -> messages held for a free thread
    delayed: Counter[str] = field(default_factory=Counter)  #: queue -> messages held until their time comes
    resident_bytes: int = 0  #: resident memory
    cpu_seconds: float = 0.0  #: user and system CPU time since the process started

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ProcessSample:
        data: dict[str, Any] = json.loads(raw)
        for name in ("busy", "prefetched", "delayed"):
            data[name] = Counter(data[name])
        return cls(**data)

    def __add__(self, other: ProcessSample) -> ProcessSample:
        return ProcessSample(
            processes=self.processes + other.processes,
            threads=self.threads + other.threads,
            busy=_add(self.busy, other.busy),
            prefetched=_add(self.prefetched, other.prefetched),
            delayed=_add(self.delayed, other.delayed),
            resident_bytes=self.resident_bytes + other.resident_bytes,
            cpu_seconds=self.cpu_seconds + other.cpu_seconds,
        )


def _add(a: Counter[str], b: Counter[str]) -> Counter[str]:
    # Counter's own + drops zeros, and a queue with no busy thread is still a series worth serving.
    total = Counter(a)
    for key, n in b.items():
        total[key] += n
    return total


def total(samples: Iterable[ProcessSample]) -> ProcessSample:
    return sum(samples, ProcessSample())


def sample(worker: Any, running: _Runs) -> ProcessSample:
    """This process now: `worker` is Dramatiq's Worker (its consumers and its shared work queue)."""
    consumers = dict(worker.consumers)  # one C-level copy: consumers may be added while we read
    queues = {q_name(name) for name in consumers}
    busy = Counter(dict.fromkeys(queues, 0))
    busy.update(run.queue for run in running.runs().values() if run.queue)
    delayed = Counter(dict.fromkeys(queues, 0))
    for name, consumer in consumers.items():
        delayed[q_name(name)] += consumer.delay_queue.qsize()
    prefetched = Counter(dict.fromkeys(queues, 0))
    work_queue = worker.work_queue
    with work_queue.mutex:  # the PriorityQueue's own lock: a copy of at most its prefetch, taken at once
        held = list(work_queue.queue)
    prefetched.update(q_name(item.message.queue_name) for item in held)
    times = os.times()
    return ProcessSample(
        processes=1,
        threads=int(worker.worker_threads),
        busy=busy,
        prefetched=prefetched,
        delayed=delayed,
        resident_bytes=_resident_bytes(),
        cpu_seconds=times.user + times.system,
    )


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:  # Linux: sizes in pages, resident second
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0  # not Linux: the figure is left at 0 rather than guessed
