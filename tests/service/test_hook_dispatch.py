"""The broker calls only the hooks a middleware defines, and follows the stack when it changes."""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from service.worker.hook_failures import GuardedRabbitmqBroker


class Counts(Middleware):
    def __init__(self, calls: list[str], name: str) -> None:
        self.calls, self.name = calls, name

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.calls.append(f"{self.name}:before")

    def after_process_message(self, broker: dramatiq.Broker, message: Any, **kwargs: Any) -> None:
        self.calls.append(f"{self.name}:after")


class Silent(Middleware):
    """Defines no hook of its own: the broker must not call Middleware's empty ones on it."""


def broker_with(*middleware: Middleware) -> GuardedRabbitmqBroker:
    return GuardedRabbitmqBroker(url=os.environ["RABBITMQ_URL"], middleware=list(middleware))


def test_only_the_hooks_a_middleware_defines_are_called_in_stack_order() -> None:
    calls: list[str] = []
    broker = broker_with(Counts(calls, "a"), Silent(), Counts(calls, "b"))
    assert [m for m, _ in broker._hooks("before_process_message")] == [broker.middleware[0], broker.middleware[2]]
    broker.emit_before("process_message", object())
    broker.emit_after("process_message", object(), result=None)
    assert calls == ["a:before", "b:before", "b:after", "a:after"]


def test_a_middleware_added_or_taken_out_later_is_seen_at_the_next_signal() -> None:
    calls: list[str] = []
    broker = broker_with(Counts(calls, "a"))
    broker.emit_before("process_message", object())
    broker.add_middleware(Counts(calls, "late"))
    broker.emit_before("process_message", object())
    broker.middleware[:] = [m for m in broker.middleware if getattr(m, "name", "") != "a"]
    broker.emit_before("process_message", object())
    assert calls == ["a:before", "a:before", "late:before", "late:before"]


def test_a_failing_hook_outside_process_message_is_logged_and_the_rest_still_run() -> None:
    calls: list[str] = []

    class Broken(Middleware):
        def before_ack(self, broker: dramatiq.Broker, message: Any) -> None:
            raise RuntimeError("boom")

    class Acks(Middleware):
        def before_ack(self, broker: dramatiq.Broker, message: Any) -> None:
            calls.append("ack")

    broker = broker_with(Broken(), Acks())
    broker.emit_before("ack", object())
    assert calls == ["ack"]
