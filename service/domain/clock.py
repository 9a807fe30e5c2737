"""Wall-clock time in the two forms the store keeps: milliseconds and ISO 8601 UTC."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)


#: The last whole second formatted, and its text: jobs finish many times a second, and formatting the date part was
#: a few per cent of a worker's CPU per job. One tuple, replaced whole, so threads never see half an update.
_last_second: tuple[int, str] = (-1, "")


def iso_from_ms(ms: int) -> str:
    global _last_second
    seconds, millis = divmod(ms, 1000)
    second, text = _last_second
    if second != seconds:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last_second = (seconds, text)
    return f"{text}.{millis:03d}Z"


def now_iso() -> str:
    return iso_from_ms(now_ms())
