"""The Lua scripts of lua/ as the stores register them; the job-store ones with the key layout and common.lua."""

from __future__ import annotations

from importlib import resources

from service.store import keys

#: What a job-store script is called with first: keys.LUA_KEYS's values, as its KEYS.
LAYOUT: list[str] = list(keys.LUA_KEYS.values())

#: Names the layout's KEYS in the script: built from keys.LUA_KEYS, so neither a name nor the order is spelled twice.
_DECLARE_LAYOUT = f"local {', '.join(keys.LUA_KEYS)} = unpack(KEYS, 1, {len(LAYOUT)})\n"


def text(name: str) -> str:
    """lua/<name>.lua as it stands: the schedule store's scripts take every key they touch as KEYS."""
    return (resources.files("service.store") / "lua" / f"{name}.lua").read_text()


def job_script(name: str, events_maxlen: int) -> str:
    """A job-store script: the layout named, common.lua, and the event stream's cap baked in (no read of it per call).
    Call it with LAYOUT (and the script's own keys, if any, after it) as KEYS."""
    common = text("common").replace("${EVENTS_STREAM_MAXLEN}", str(int(events_maxlen)))
    return _DECLARE_LAYOUT + common + "\n" + text(name)
