"""RABBITMQ_URL with several nodes and RABBITMQ_QUEUE_TYPE: what the settings accept, which queues each type
declares with which arguments, where a message of each priority goes, and the line a queue of the other type gets.
The same against a real cluster: tests/reliability/test_rabbit_cluster.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from pydantic import ValidationError

from service.domain.states import BROKER_PRIORITY, Priority
from service.rabbit.link import explain_mismatch
from service.rabbit.queue_types import DELIVERY_LIMIT, QueueShape, QueueType, canonical
from service.settings import Settings, describe_error

CLASSIC, QUORUM = QueueShape(), QueueShape(QueueType.QUORUM)


@pytest.mark.parametrize(
    ("value", "nodes"),
    [
        ("amqp://guest:guest@localhost:5672/", ["amqp://guest:guest@localhost:5672/"]),
        (
            "amqp://jobs:pw@rabbit-1:5672,rabbit-2:5673,rabbit-3/v?heartbeat=10",
            [
                "amqp://jobs:pw@rabbit-1:5672/v?heartbeat=10",
                "amqp://jobs:pw@rabbit-2:5673/v?heartbeat=10",
                "amqp://jobs:pw@rabbit-3/v?heartbeat=10",
            ],
        ),
        ("amqp://a:1@h1/, amqps://a:1@h2/", ["amqp://a:1@h1/", "amqps://a:1@h2/"]),
        ("amqp://a:1@h1/;amqp://a:1@h2/", ["amqp://a:1@h1/", "amqp://a:1@h2/"]),
    ],
    ids=["one-node", "one-url-listing-hosts", "urls-comma-separated", "dramatiqs-semicolons"],
)
def test_rabbitmq_url_takes_one_node_or_a_clusters_nodes_in_either_form(value: str, nodes: list[str]) -> None:
    assert Settings(rabbitmq_url=value).rabbitmq_url.split(";") == nodes


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("amqp://a:secret@h1/,http://a:secret@h2/", "one per node (node 2 of 2 is 'http://a:***@h2/')"),
        ("amqp://a:secret@h1:99x/,amqp://a:secret@h2/", "one per node (node 1 of 2 is 'amqp://a:***@h1:99x/')"),
        ("amqp://h1/,amqp//h2", "give whole URLs separated by commas, or one URL listing its hosts"),
    ],
    ids=["a-node-not-amqp", "a-port-not-a-number", "a-mangled-second-url"],
)
def test_a_bad_node_in_rabbitmq_url_is_named_without_its_password(value: str, complaint: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(rabbitmq_url=value)
    line = describe_error(raised.value)  # what the process prints as it stops
    assert line.startswith("invalid configuration: RABBITMQ_URL: Value error, must look like amqp://"), line
    assert complaint in line and "secret" not in line, line


def test_a_worker_with_a_bad_rabbitmq_node_or_queue_type_stops_with_one_line_naming_the_variable() -> None:
    env = {**os.environ, "RABBITMQ_URL": "amqp://a@h1/,ftp://h2/", "RABBITMQ_QUEUE_TYPE": "mirrored"}
    done = subprocess.run(
        [sys.executable, "-m", "dramatiq", "service.actors", "--processes", "1", "--threads", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in done.stderr.splitlines() if "invalid configuration" in line]
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "RABBITMQ_URL: Value error, must look like amqp://" in lines[0]
    assert "(node 2 of 2 is 'ftp://h2/')" in lines[0]
    assert "RABBITMQ_QUEUE_TYPE: Input should be 'classic' or 'quorum'" in lines[0]


def test_classic_queues_are_declared_as_dramatiq_declares_them_with_max_priority() -> None:
    dramatiq_broker = RabbitmqBroker(url="amqp://127.0.0.1:1/", max_priority=10)
    dramatiqs = dramatiq_broker._build_queue_arguments("email")  # type: ignore[no-untyped-call]
    assert CLASSIC.declarations("email") == [
        ("email", dramatiqs),
        ("email.DQ", dramatiqs),
        ("email.XQ", {"x-message-ttl": 604_800_000}),
    ]
    assert CLASSIC.lanes("email") == ["email"]
    assert {CLASSIC.lane_for("email", p) for p in (None, *BROKER_PRIORITY.values())} == {"email"}


def test_quorum_queues_have_lanes_a_delivery_limit_on_the_work_queues_and_dead_letters_into_xq() -> None:
    work = {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "email.XQ",
        "x-delivery-limit": DELIVERY_LIMIT,
    }
    delay = {k: v for k, v in work.items() if k != "x-delivery-limit"}
    assert QUORUM.declarations("email") == [
        ("email", work),
        ("email.HQ", work),
        ("email.LQ", work),
        ("email.DQ", delay),
        ("email.XQ", {"x-queue-type": "quorum", "x-message-ttl": 604_800_000}),
    ]
    assert "x-max-priority" not in str(QUORUM.declarations("email"))  # RabbitMQ 3.x refuses it on a quorum queue
    assert QUORUM.lanes("email") == ["email.HQ", "email", "email.LQ"]  # consumed highest first
    assert [canonical(name) for name, _ in QUORUM.declarations("email")] == ["email"] * 5


def test_each_priority_is_published_to_its_lane_and_a_delayed_message_to_the_delay_queue() -> None:
    lanes = {level: QUORUM.lane_for("email", BROKER_PRIORITY[level]) for level in Priority}
    assert lanes == {Priority.HIGH: "email.HQ", Priority.NORMAL: "email", Priority.LOW: "email.LQ"}
    assert QUORUM.lane_for("email", None) == "email"  # plain Dramatiq sends no priority: normal
    assert QUORUM.lane_for("email.DQ", BROKER_PRIORITY[Priority.HIGH]) == "email.DQ"


#: RabbitMQ 3.10's replies (PRECONDITION_FAILED), as a real node gave them.
CLASSIC_WITH_PRIORITY_DECLARED_QUORUM = (
    "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'email' in vhost 'v': received none but "
    "current is the value '10' of type 'signedint'"
)
QUORUM_DECLARED_CLASSIC = (
    "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'email' in vhost 'v': received none but current "
    "is the value 'quorum' of type 'longstr'"
)
CLASSIC_WITHOUT_PRIORITY_DECLARED_QUORUM = (
    "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'email.XQ' in vhost 'v': received the value "
    "'quorum' of type 'longstr' but current is none"
)
OTHER_DELIVERY_LIMIT = (
    "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'email' in vhost 'v': received '50' but "
    "current is '5'"
)


def test_a_queue_of_the_other_type_is_explained_with_rabbitmq_queue_type() -> None:
    quorum_work, classic_work = QUORUM.work_arguments("email"), CLASSIC.work_arguments("email")
    fix = "or delete it once it holds nothing you need (rabbitmqctl delete_queue -p v {queue}) and the worker declares"
    assert explain_mismatch("email", quorum_work, CLASSIC_WITH_PRIORITY_DECLARED_QUORUM, "v") == (
        "queue 'email' is a classic queue but RABBITMQ_QUEUE_TYPE=quorum declares it as a quorum queue: set "
        f"RABBITMQ_QUEUE_TYPE=classic to use it as it is, {fix.format(queue='email')} it again"
    )
    assert explain_mismatch("email", classic_work, QUORUM_DECLARED_CLASSIC, "v") == (
        "queue 'email' is a quorum queue but RABBITMQ_QUEUE_TYPE=classic declares it as a classic queue: set "
        f"RABBITMQ_QUEUE_TYPE=quorum to use it as it is, {fix.format(queue='email')} it again"
    )
    dead = QUORUM.dead_arguments()
    assert explain_mismatch("email.XQ", dead, CLASSIC_WITHOUT_PRIORITY_DECLARED_QUORUM, "v").startswith(
        "queue 'email.XQ' is a classic queue but RABBITMQ_QUEUE_TYPE=quorum declares it as a quorum queue"
    )
    assert explain_mismatch("email", quorum_work, OTHER_DELIVERY_LIMIT, "v").startswith(
        f"queue 'email' exists with x-delivery-limit=5 but this service declares it with x-delivery-limit="
        f"{DELIVERY_LIMIT}: declare it with the same arguments"
    )
