"""The fault tests' "never twice" check, on made-up executions: it flags exactly the runs that must not happen."""

from __future__ import annotations

from collections import Counter

from tests.reliability.harness import Execution, Tally


def tally_of(*executions: Execution) -> Tally:
    return Tally(Counter(), Counter(), {}, {"j": list(executions)})


def test_a_job_taken_over_after_its_process_was_killed_ran_once() -> None:
    killed_at = {1: 10.0}
    tally = tally_of(Execution("j", 1, 9.0, "a"), Execution("j", 2, 14.0, "b", 14.1))
    assert tally.ran_twice(killed_at) == []
    assert [e.token for e in tally.interrupted(killed_at)] == ["a"]


def test_a_second_run_after_a_finished_first_is_allowed_only_when_that_process_was_killed_before_it() -> None:
    first, second = Execution("j", 1, 9.0, "a", 9.1), Execution("j", 2, 14.0, "b", 14.1)
    assert tally_of(first, second).ran_twice({1: 9.15}) == []  # killed before recording its completion
    assert tally_of(first, second).ran_twice({}) == [(first, second)]  # both completed
    # Killed at some point, but only after the second run had started: the old, pid-only check let this pass.
    assert tally_of(first, second).ran_twice({1: 20.0}) == [(first, second)]


def test_two_runs_that_overlap_in_time_are_flagged_even_if_the_first_process_died() -> None:
    first, second = Execution("j", 1, 9.0, "a"), Execution("j", 2, 9.5, "b", 9.6)
    assert tally_of(first, second).ran_twice({1: 10.0}) == [(first, second)]
    assert tally_of(first, second).ran_twice({}) == [(first, second)]
