"""`jobs list` with the search filters and `jobs bulk cancel|retry|requeue-dead`, in-process and as the real console
script: counts with --dry-run, follows a run to its end, and says what is wrong with bad input in one line."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from service.bootstrap import store
from service.domain.clock import iso_from_ms, now_ms
from service.domain.states import JobState
from tests.support.bulk_actors import QUEUE, recorded_jobs
from tests.support.cli import run_cli, run_jobs
from tests.support.graveyard import empty


@pytest.fixture(autouse=True)
def bulk_queue() -> Iterator[None]:
    empty(QUEUE)
    yield
    empty(QUEUE)


def one_line_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert all(word in lines[0] for word in words), err


def test_list_searches_by_key_reason_and_window_and_prints_the_next_page_with_its_filters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = now_ms() - 10_000
    mine = recorded_jobs(
        3, JobState.FAILED, account="acme", reason="Quota EXCEEDED", created_ms=[base, base + 1, base + 2]
    )
    recorded_jobs(2, JobState.FAILED, account="acme", reason="timeout", created_ms=base + 3)
    recorded_jobs(2, JobState.FAILED, account="other", reason="quota exceeded", created_ms=base + 4)

    listed = run_cli(capsys, "list", "--key", "acme", "--reason", "quota", "--json")
    assert listed.code == 0, listed.err
    assert [job["jobId"] for job in json.loads(listed.out)["jobs"]] == list(reversed(mine))
    window = run_cli(capsys, "list", "--key", "acme", "--created-after", iso_from_ms(base + 1), "--limit", "1")
    assert window.code == 0, window.err
    assert "more: jobs list --key acme --created-after " in window.out and "--cursor " in window.out


def test_bad_filters_are_one_line_naming_the_option_with_exit_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    for args, option in (
        (["list", "--created-after", "soon"], "--created-after"),
        (["list", "--created-after", "2025-02-01", "--created-before", "2025-01-01"], "--created-before"),
        (["list", "--cursor", "yesterday"], "--cursor"),
        (["bulk", "retry", "--reason", "x" * 201, "--dry-run"], "--reason"),
        (["bulk", "cancel", "--key", "a\tb", "--dry-run"], "--key"),
    ):
        outcome = run_cli(capsys, *args)
        assert outcome.code == 2, (args, outcome)
        one_line_error(outcome.err, option)
    unknown = run_cli(capsys, "bulk", "retry", "--actor", "nope", "--dry-run")
    assert unknown.code == 2
    one_line_error(unknown.err, "unknown actor 'nope'")


def test_bulk_retry_counts_with_dry_run_then_follows_the_run_to_its_end(capsys: pytest.CaptureFixture[str]) -> None:
    failed = recorded_jobs(3, JobState.FAILED, reason="ConnectionResetError")
    recorded_jobs(2, JobState.FAILED, reason="other")

    dry = run_cli(capsys, "bulk", "retry", "--reason", "connectionreset", "--dry-run")
    assert (dry.code, dry.out.strip()) == (0, "retry would act on 3 jobs"), dry.err
    as_json = run_cli(capsys, "bulk", "retry", "--reason", "connectionreset", "--dry-run", "--json")
    assert json.loads(as_json.out) == {"action": "retry", "filter": {"reason": "connectionreset"}, "count": 3}
    assert all(store.get(job_id).state is JobState.FAILED for job_id in failed)  # type: ignore[union-attr]

    ran = run_cli(capsys, "bulk", "retry", "--reason", "connectionreset")
    assert ran.code == 0, ran.err
    assert ran.out.strip() == "retry: acted on 3 of 3 jobs"
    assert "retry: 3 of 3 done (3 acted on)" in ran.err  # progress on stderr
    assert all(store.get(job_id).state is JobState.QUEUED for job_id in failed)  # type: ignore[union-attr]


def test_the_real_jobs_executable_counts_and_cancels_a_keys_waiting_jobs() -> None:
    waiting = recorded_jobs(4, JobState.QUEUED, account="acme")
    recorded_jobs(1, JobState.QUEUED, account="other")
    dry = run_jobs("bulk", "cancel", "--key", "acme", "--dry-run")
    assert (dry.code, dry.out.strip()) == (0, "cancel would act on 4 jobs"), dry.err
    done = run_jobs("bulk", "cancel", "--key", "acme", "--json")
    assert done.code == 0, done.err
    figures = json.loads(done.out)
    assert (figures["state"], figures["total"], figures["acted"]) == ("done", 4, 4)
    assert all(store.get(job_id).state is JobState.CANCELLED for job_id in waiting)  # type: ignore[union-attr]
