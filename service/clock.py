"""Wall-clock time in the two forms the store keeps: milliseconds and ISO 8601 UTC."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_from_ms(ms: int) -> str:
    # strftime on a struct_time: about three times cheaper than datetime, and this runs on every transition.
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def now_iso() -> str:
    return iso_from_ms(now_ms())
