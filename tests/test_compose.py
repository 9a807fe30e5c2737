"""compose.yaml and the Procfile describe the same processes; the scheduler waits for RabbitMQ and Redis; nothing is
published beyond loopback, Redis and RabbitMQ need credentials of their own, and the image does not run as root."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from service.settings import Settings

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


# -- what compose.yaml and the Dockerfile claim for security ----------------------------------------------------------

APP_SERVICES = ("web", "worker", "scheduler")
CREDENTIALS = {
    "RABBITMQ_USER": "jobs-ops",
    "RABBITMQ_PASSWORD": "rabbit0pw1",
    "REDIS_PASSWORD": "redis0pw1",
    "API_TOKEN": "tok0api1",
}
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:?[-?])(?P<word>[^}]*))?\}")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error}; a missing mandatory one raises KeyError."""

    def one(match: re.Match[str]) -> str:
        name, op, word = match["name"], match["op"], match["word"]
        if variables.get(name):
            return variables[name]
        if op and op.endswith("?"):
            raise KeyError(f"{name}: {word}")
        return word if op and op.endswith("-") else ""

    return _VARIABLE.sub(one, value).replace("$$", "$")


def environment_of(service: str, variables: dict[str, str]) -> dict[str, str]:
    raw = compose()["services"][service].get("environment", {})
    return {name: interpolate(str(value), variables) for name, value in raw.items()}


def test_every_published_port_is_bound_to_loopback_only() -> None:
    published = {name: svc.get("ports", []) for name, svc in compose()["services"].items()}
    assert published["rabbitmq"] and published["redis"] and published["web"]  # the check below had ports to look at
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_redis_requires_the_password_every_process_connects_with() -> None:
    redis = compose()["services"]["redis"]
    assert "--requirepass" in redis["command"][-1] and "$$REDISCLI_AUTH" in redis["command"][-1]
    assert environment_of("redis", CREDENTIALS)["REDISCLI_AUTH"] == "redis0pw1"
    with pytest.raises(KeyError, match="REDIS_PASSWORD"):  # no default: unset, compose refuses to start
        environment_of("redis", {**CREDENTIALS, "REDIS_PASSWORD": ""})
    for service in APP_SERVICES:
        settings = Settings.model_validate({k.lower(): v for k, v in environment_of(service, CREDENTIALS).items()})
        assert settings.redis_url == "redis://:redis0pw1@redis:6379/0", service


def test_rabbitmq_has_a_user_of_its_own_from_variables_and_no_guest() -> None:
    assert "guest" not in yaml.safe_dump(compose())  # comments aside
    broker = environment_of("rabbitmq", CREDENTIALS)
    assert (broker["RABBITMQ_DEFAULT_USER"], broker["RABBITMQ_DEFAULT_PASS"]) == ("jobs-ops", "rabbit0pw1")
    for service in APP_SERVICES:
        url = urlsplit(environment_of(service, CREDENTIALS)["RABBITMQ_URL"])
        assert (url.username, url.password, url.hostname) == ("jobs-ops", "rabbit0pw1", "rabbitmq"), service
    with pytest.raises(KeyError, match="RABBITMQ_PASSWORD"):
        environment_of("rabbitmq", {**CREDENTIALS, "RABBITMQ_PASSWORD": ""})


def test_the_web_process_needs_an_api_token_and_answers_its_own_names() -> None:
    web = environment_of("web", CREDENTIALS)
    assert web["API_TOKEN"] == "tok0api1"
    assert set(web["ALLOWED_HOSTS"].split(",")) >= {"localhost", "127.0.0.1", "web"}  # web: prometheus's scrapes
    with pytest.raises(KeyError, match="API_TOKEN"):
        environment_of("web", {**CREDENTIALS, "API_TOKEN": ""})
    for service in ("worker", "scheduler"):
        assert "API_TOKEN" not in environment_of(service, CREDENTIALS)  # a secret only where it is used


def test_the_compose_web_and_worker_run_the_procfile_commands() -> None:
    for name in ("web", "worker"):
        command = compose()["services"][name]["command"]
        assert command[:2] == ["sh", "-c"], name
        assert command[2].replace("$$", "$") == procfile()[name], name
    assert set(procfile()) == set(APP_SERVICES)


def test_docker_compose_accepts_the_file_with_credentials_and_refuses_it_without() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        message = "docker-compose is not installed (apt-get install docker-compose; make test does it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    clean = {k: v for k, v in os.environ.items() if k not in CREDENTIALS}
    accepted = subprocess.run([tool, "config", "-q"], cwd=ROOT, env={**clean, **CREDENTIALS}, capture_output=True)
    assert accepted.returncode == 0, accepted.stderr.decode()
    refused = subprocess.run([tool, "config", "-q"], cwd=ROOT, env=clean, capture_output=True, text=True)
    assert refused.returncode != 0 and "set RABBITMQ_" in refused.stderr, refused.stderr


def test_the_image_runs_as_a_user_that_is_not_root() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    users = [line.split(None, 1)[1] for line in lines if line.upper().startswith("USER ")]
    assert users, "the Dockerfile has no USER line: the image runs as root"
    last = users[-1].split(":")[0]
    assert last not in ("root", "0"), users[-1]
    assert any("useradd" in line and f"--uid {last}" in line for line in lines), "the USER is never created"
    # No RUN after it: nothing in the build undoes it, or needed root it no longer has.
    assert lines.index(f"USER {users[-1]}") > max(i for i, line in enumerate(lines) if line.startswith("RUN "))


def test_the_ha_profile_has_a_redis_primary_two_replicas_of_it_and_three_sentinels_watching_it() -> None:
    services = compose()["services"]
    servers = {name: svc for name, svc in services.items() if name.startswith("redis-ha-")}
    sentinels = {name: svc for name, svc in services.items() if name.startswith("sentinel-")}
    assert len(servers) == 3 and len(sentinels) == 3
    assert all(svc["profiles"] == ["ha"] and not svc.get("ports") for svc in [*servers.values(), *sentinels.values()])
    replica_of = {name: environment_of(name, CREDENTIALS)["REPLICA_OF"] for name in servers}
    assert replica_of == {"redis-ha-1": "", "redis-ha-2": "redis-ha-1", "redis-ha-3": "redis-ha-1"}
    for name, svc in servers.items():
        assert environment_of(name, CREDENTIALS)["REDISCLI_AUTH"] == "redis0pw1"
        assert {"--requirepass", "--masterauth", "--min-replicas-to-write"} <= set(svc["command"][-1].split()), name
    for name, svc in sentinels.items():
        script = svc["command"][-1]
        assert "sentinel monitor jobs redis-ha-1 6379 2" in script and "auth-pass jobs $$REDIS_PASSWORD" in script
        assert environment_of(name, CREDENTIALS)["REDIS_PASSWORD"] == "redis0pw1"


# -- the ha profile: a RabbitMQ cluster ------------------------------------------------------------------------------

RABBIT_NODES = ("rabbit-1", "rabbit-2", "rabbit-3")
HA_APP_SERVICES = {"web-ha": "web", "worker-ha": "worker", "scheduler-ha": "scheduler"}


def test_the_ha_profile_forms_a_three_node_rabbitmq_cluster_that_shares_a_cookie() -> None:
    services = compose()["services"]
    script = services["rabbit-1"]["entrypoint"][-1]
    for node in RABBIT_NODES:
        service = services[node]
        assert service["profiles"] == ["ha"] and service["hostname"] == node, node
        assert service["entrypoint"][-1] == script, node  # the same cookie and peer list on each
        assert environment_of(node, {**CREDENTIALS, "RABBITMQ_CLUSTER_COOKIE": "c0"})["RABBITMQ_CLUSTER_COOKIE"] == "c0"
    for number, node in enumerate(RABBIT_NODES, 1):
        assert f"cluster_formation.classic_config.nodes.{number} = rabbit@{node}" in script
    for node in RABBIT_NODES[1:]:  # joining the first, not forming clusters of their own
        assert services[node]["depends_on"] == {"rabbit-1": {"condition": "service_healthy"}}


def test_the_ha_profile_runs_the_procfile_processes_on_every_node_in_quorum_mode() -> None:
    services = compose()["services"]
    for service, twin in HA_APP_SERVICES.items():
        assert services[service]["profiles"] == ["ha"], service
        assert services[service]["command"] == services[twin]["command"], service
        for node in RABBIT_NODES:
            assert services[service]["depends_on"][node] == {"condition": "service_healthy"}, service
        environment = environment_of(service, CREDENTIALS)
        settings = Settings.model_validate({k.lower(): v for k, v in environment.items()})
        assert settings.rabbitmq_queue_type == "quorum", service
        assert settings.redis_sentinel_master == "jobs", service  # Redis through the Sentinels of the profile
        assert len(settings.redis_sentinels) == 3, service
        for sentinel in ("sentinel-1", "sentinel-2", "sentinel-3"):
            assert services[service]["depends_on"][sentinel] == {"condition": "service_healthy"}, service
        nodes = [urlsplit(url) for url in settings.rabbitmq_url.split(";")]
        assert sorted(url.hostname or "" for url in nodes) == list(RABBIT_NODES), service
        assert {(url.username, url.password) for url in nodes} == {("jobs-ops", "rabbit0pw1")}, service


def test_docker_compose_accepts_the_ha_profile() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (the test above fails under CI for it)")
    clean = {k: v for k, v in os.environ.items() if k not in CREDENTIALS}
    accepted = subprocess.run(
        [tool, "--profile", "ha", "config", "--services"], cwd=ROOT, env={**clean, **CREDENTIALS}, capture_output=True
    )
    assert accepted.returncode == 0, accepted.stderr.decode()
    assert set(RABBIT_NODES) | set(HA_APP_SERVICES) <= set(accepted.stdout.decode().split())
