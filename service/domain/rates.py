"""Rate limits as written in actor options and settings ("100/s", "30/m", "5/10s"): parsed and checked in one place."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")


def parse_rate(spec: str) -> tuple[int, int]:
    """ "100/s" -> (100, 1000 ms); "5/10s" -> (5, 10000 ms)."""
    match = _SPEC.match(spec.lower())
    if not match or match.group(3) not in _PERIODS or int(match.group(1)) < 1:
        raise ValueError(f"rate limit {spec!r} must look like 100/s, 30/m or 5/10s")
    count, multiple, unit = match.groups()
    return int(count), int(multiple or 1) * _PERIODS[unit] * 1000


def _checked(spec: str) -> str:
    parse_rate(spec)
    return spec


#: A setting holding a rate limit: refused at start when it does not parse, kept as written (actor options take it so).
RateSpec = Annotated[str, AfterValidator(_checked)]
