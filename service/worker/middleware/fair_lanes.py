"""Gives each keyed job of a fair queue (FAIR_QUEUES) its key lane as it is enqueued, so that a key with a backlog
fills one lane and the worker takes turns across lanes (service/rabbit/queue_types.py, service/rabbit/lanes.py).

A key keeps its lane while it is sent (Redis, service/store/fair_lane_store.py; a new key takes the next lane in
turn), remembered here for a few seconds so a burst of one key costs one round trip. A message that has a lane keeps
it: a delayed or retried job comes back from the delay queue into its own lane. When Redis does not answer, the lane
is a hash of the key, so the enqueue never fails for it (a key may then sit in another lane than its Redis one for a
while, which only costs it its turn's fairness, not a job). A job without a key has no lane: it goes to the queue
itself, which takes its turn as one more lane.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from typing import Any

import dramatiq
import redis
from dramatiq.common import q_name
from dramatiq.middleware import Middleware

from service.domain import job_key
from service.rabbit.link import shape_of
from service.rabbit.queue_types import LANE_OPTION
from service.store.fair_lane_store import FairLaneStore

logger = logging.getLogger(__name__)

#: How long this process reuses a key's lane without asking Redis.
CACHE_S = 5.0
#: After Redis failed to answer, lanes are hashed for this long before Redis is asked again (not a timeout each send).
REDIS_BACKOFF_S = 5.0
#: Entries kept at most; past it the expired ones go (a burst of many keys).
CACHE_MAX = 10_000


def hashed_lane(key: str, lanes: int) -> int:
    """The lane a key gets when Redis is away: the same in every process."""
    return zlib.crc32(key.encode()) % lanes


class FairLanes(Middleware):
    def __init__(self, lanes: FairLaneStore) -> None:
        self.lanes = lanes
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, int], tuple[float, int]] = {}  #: (queue, key, lanes) -> (until, lane)
        self._redis_back_at = 0.0

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        shape = shape_of(broker)  # type: ignore[arg-type]
        queue = q_name(message.queue_name)
        if not shape.is_fair(queue):
            return
        if shape.valid_lane(message.options.get(LANE_OPTION)):
            return  # given at its first send: a delayed or retried job goes back to its own lane
        key = message.options.get(job_key.OPTION)
        if key is None:
            message.options.pop(LANE_OPTION, None)
            return
        message.options[LANE_OPTION] = self.lane(queue, str(key), shape.fair_lanes)

    def lane(self, queue: str, key: str, lanes: int) -> int:
        now = time.monotonic()
        entry = (queue, key, lanes)
        with self._lock:
            cached = self._cache.get(entry)
            if cached is not None and cached[0] > now:
                return cached[1]
            if now < self._redis_back_at:
                return hashed_lane(key, lanes)
        try:
            lane = self.lanes.lane(queue, key, lanes)
        except redis.RedisError as error:
            logger.warning("fair lane of key %r on %s hashed: Redis did not answer (%s)", key, queue, error)
            with self._lock:
                self._redis_back_at = time.monotonic() + REDIS_BACKOFF_S
            return hashed_lane(key, lanes)
        with self._lock:
            if len(self._cache) >= CACHE_MAX:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            self._cache[entry] = (now + CACHE_S, lane)
        return lane
