"""A job's key: who the job is for (a tenant, an account, a webhook host), so limits, fair dispatch, flow control,
search and metrics can act per key.

A sender names it (`send_with_options(key=...)`, `POST /jobs/{actor}?key=`), or the actor declares which payload
field holds it (`@job(..., key="account_id")`). It travels as the message option `key` and is kept on the record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: The message option that carries a job's key.
OPTION = "key"
#: Long enough for any id or host name, short enough that keys cannot be used to fill Redis.
KEY_MAX = 200
#: Printable, one line: a key is part of Redis key names, metric labels and log lines.
KEY_PATTERN = r"^[^\x00-\x1f\x7f]{1,200}$"
_VALID = re.compile(KEY_PATTERN)


class InvalidKey(ValueError):
    """A key that is empty, too long or holds control characters."""


def checked(value: object) -> str:
    """`value` as a key (numbers become text), or InvalidKey saying what is wrong with it."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidKey(f"key: must be a string, not {type(value).__name__}")
    text = str(value)
    if not _VALID.match(text):
        raise InvalidKey(f"key: must be 1 to {KEY_MAX} printable characters")
    return text


def key_of(options: Mapping[str, Any], payload: Mapping[str, Any], field: str | None) -> str | None:
    """The job's key: the sender's, else the actor's key field of the payload (None when neither gives one)."""
    given = options.get(OPTION)
    if given is not None:
        return checked(given)
    if field is None:
        return None
    value = payload.get(field)
    return None if value is None or value == "" else checked(value)
