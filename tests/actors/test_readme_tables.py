"""The README's "Job configuration" tables say what the actors really do: each cell is read back and compared."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.bootstrap import broker, settings
from service.domain.periodic import schedule_of
from service.worker.typed_actor import TypedActor

README = Path(__file__).resolve().parents[2] / "README.md"
_UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|min|h)\b")
_SECTION = re.compile(r"^### `(?P<actor>\w+)` \(queue `(?P<queue>[\w.-]+)`", re.M)

DOCUMENTED = ["send_email", "deliver_webhook", "generate_report", "cleanup_jobs"]


def tables() -> dict[str, tuple[str, dict[str, str]]]:
    """actor -> (queue, {setting: value}) from the first table under each "### `actor` (queue `q`..." heading."""
    text = README.read_text()
    found: dict[str, tuple[str, dict[str, str]]] = {}
    headings = list(_SECTION.finditer(text))
    for i, heading in enumerate(headings):
        end = headings[i + 1].start() if i + 1 < len(headings) else len(text)
        body = text[heading.end() : end]
        part = body.split("#### Job configuration", 1)
        if len(part) < 2:
            continue
        rows: dict[str, str] = {}
        for line in part[1].strip().splitlines()[2:]:
            if not line.startswith("|"):
                break
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1]
        found[heading["actor"]] = (heading["queue"], rows)
    return found


def durations_ms(cell: str) -> list[int]:
    return [int(float(n) * _UNITS_MS[unit]) for n, unit in _DURATION.findall(cell)]


def present() -> list[str]:
    declared = set(broker.get_declared_actors())
    return [name for name in DOCUMENTED if name in declared]


@pytest.mark.parametrize("name", present())
def test_the_readme_table_of_each_job_matches_its_real_options(name: str) -> None:
    documented = tables()
    assert name in documented, f"README has no '### `{name}` (queue ...' section with a Job configuration table"
    queue, rows = documented[name]
    actor = broker.get_actor(name)
    assert isinstance(actor, TypedActor)
    options = actor.options
    assert queue == actor.queue_name

    assert int(rows["max retries"]) == options.get("max_retries", settings.job_max_retries)

    delays_cell = rows["retry delays"]
    policy = options.get("retry_backoff", "fixed")
    delays = options.get("retry_delays", settings.job_retry_delays_ms)
    assert delays_cell.split()[0].rstrip(":") == policy
    if policy == "exponential":
        assert durations_ms(delays_cell) == [delays[0], options["max_backoff"]]
    else:
        assert durations_ms(delays_cell) == delays

    assert durations_ms(rows["timeout"]) == [options.get("time_limit", settings.job_time_limit_ms)]

    limit = options.get("concurrency_limit")
    if limit:
        assert rows["concurrency"].startswith(f"{limit} "), rows["concurrency"]
    else:
        assert rows["concurrency"].startswith("`JOB_CONCURRENCY`"), rows["concurrency"]

    assert rows["priority"] == actor.job_priority.value

    schedule = schedule_of(actor)
    if schedule is None:
        assert rows["schedule"] == "none"
    else:
        assert rows["schedule"].startswith(f"`{schedule.declared}`"), rows["schedule"]
        assert f"`{schedule.variable}`" in rows["schedule"]

    spec = options.get("rate_limit")
    if spec:
        assert rows["rate limit"].startswith(f"`{spec}`"), rows["rate limit"]
    else:
        assert rows["rate limit"] == "none"


def test_every_job_module_is_documented() -> None:
    assert set(present()) <= set(tables())
