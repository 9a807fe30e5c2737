"""Interruptions (time limit, cancellation, stop, lost lease) reach a worker thread only while its actor runs."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

from dramatiq.middleware.time_limit import TimeLimitExceeded

from service.worker.middleware.in_hand import JobsInHand


def _declare(running: JobsInHand, fn: Any) -> Any:
    actor = SimpleNamespace(fn=fn)
    running.after_declare_actor(None, actor)  # type: ignore[arg-type]
    return actor


def test_an_interruption_reaches_a_thread_only_while_its_actor_runs() -> None:
    running = JobsInHand()
    go_on = threading.Event()
    outcome: list[BaseException | str] = []

    def work() -> str:
        deadline = time.monotonic() + 10
        while not go_on.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        return "done"

    actor = _declare(running, work)

    def thread_body() -> None:
        try:
            outcome.append(actor.fn())
        except BaseException as error:  # the interruption is what this test looks for
            outcome.append(error)

    thread = threading.Thread(target=thread_body)
    assert not running.interrupt(threading.get_ident(), "", TimeLimitExceeded)  # nothing runs here
    thread.start()
    while not running.runs():
        time.sleep(0.01)
    assert thread.ident is not None
    assert running.interrupt(thread.ident, "", TimeLimitExceeded)
    assert not running.interrupt(thread.ident, "", TimeLimitExceeded)  # once per run
    thread.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], TimeLimitExceeded)
    assert running.runs() == {}


def test_a_finished_actor_is_not_interrupted_and_nested_calls_are_one_run() -> None:
    running = JobsInHand()
    inner = _declare(running, lambda: "inner")
    outer = _declare(running, lambda: inner.fn() + " then outer")
    assert outer.fn() == "inner then outer"
    assert running.runs() == {}
    assert not running.interrupt(threading.get_ident(), "", TimeLimitExceeded)


def test_an_interruption_meant_for_another_job_is_not_raised() -> None:
    running = JobsInHand()
    seen: list[bool] = []

    def work() -> None:
        running.runs()[threading.get_ident()].job_id = "this-job"
        seen.append(running.interrupt(threading.get_ident(), "other-job", TimeLimitExceeded))

    _declare(running, work).fn()
    assert seen == [False]
