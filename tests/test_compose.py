"""compose.yaml and the Procfile describe the same processes; the scheduler waits for RabbitMQ and Redis."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {name.strip(): command.strip() for name, _, command in (line.partition(":") for line in lines if line)}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_the_compose_scheduler_runs_the_procfile_scheduler_command_once_rabbitmq_and_redis_are_healthy() -> None:
    scheduler = compose()["services"]["scheduler"]
    assert scheduler["command"] == shlex.split(procfile()["scheduler"]) == ["periodiq", "service.actors"]
    for needed in ("rabbitmq", "redis"):
        assert scheduler["depends_on"][needed] == {"condition": "service_healthy"}
    assert scheduler["restart"] == "unless-stopped"  # a scheduler that stops is started again, and catches up
    assert {"RABBITMQ_URL", "REDIS_URL"} <= set(scheduler["environment"])
