"""Which key lane of a fair queue a key's jobs go to, kept in Redis so every sender gives a key the same lane."""

from __future__ import annotations

import redis

from service.store import keys, scripts

#: A key not sent for this long gives its lane up: its next job takes the next lane in turn.
LANE_TTL_MS = 15 * 60 * 1000


class FairLaneStore:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._lane = client.register_script(scripts.text("fair_lane"))

    def lane(self, queue: str, key: str, lanes: int) -> int:
        """The key's lane (0 <= lane < lanes), given now if it has none; one round trip. Raises redis errors."""
        answer = self._lane(keys=[keys.fair_lane(queue, key), keys.fair_turn(queue)], args=[lanes, LANE_TTL_MS])
        return int(answer)
