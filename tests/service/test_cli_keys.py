"""A job's key in the `jobs` CLI: `show` prints it with the command that lists its jobs, `list` has a KEY column when
a job on the page has a key, and `list --key` lists one key's jobs."""

from __future__ import annotations

import json

import pytest

from service.domain.states import JobState
from tests.support.cli import run_cli
from tests.support.records import move, put_record


def test_show_prints_the_key_and_how_to_list_its_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    job_id = put_record(key="acme co [vip]")
    shown = run_cli(capsys, "show", job_id)
    assert shown.code == 0, shown.err
    (line,) = [line for line in shown.out.splitlines() if line.startswith("key ")]
    # Quoted for a shell, and printed as it is: "[vip]" is no markup to the table.
    assert line.split(None, 1)[1] == "acme co [vip]  (its jobs: jobs list --key 'acme co [vip]')"
    assert json.loads(run_cli(capsys, "show", job_id, "--json").out)["key"] == "acme co [vip]"
    unkeyed = run_cli(capsys, "show", put_record())
    assert not [line for line in unkeyed.out.splitlines() if line.startswith("key ")]


def test_list_shows_a_key_column_and_lists_one_keys_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    unkeyed = put_record()
    plain = run_cli(capsys, "list")
    assert plain.code == 0 and unkeyed in plain.out
    assert "KEY" not in plain.out.splitlines()[0]  # no column while no job on the page has a key

    acme = [put_record(key="acme") for _ in range(3)]
    other = put_record(key="globex")
    move(acme[0], JobState.CANCELLED)
    table = run_cli(capsys, "list")
    assert table.out.splitlines()[0].split() == ["JOB", "ID", "STATE", "CREATED", "ACTOR", "KEY"]
    rows = {line.split()[0]: line.split()[-1] for line in table.out.splitlines()[1:]}
    assert rows[other] == "globex" and rows[acme[1]] == "acme" and rows[unkeyed] == "-"

    listed = json.loads(run_cli(capsys, "list", "--key", "acme", "--json").out)
    assert sorted(j["jobId"] for j in listed["jobs"]) == sorted(acme)
    first_page = json.loads(run_cli(capsys, "list", "--key", "acme", "--limit", "2", "--json").out)
    paged = run_cli(capsys, "list", "--key", "acme", "--limit", "2")
    assert f"more: jobs list --key acme --cursor {first_page['next']}\n" in paged.out


def test_list_refuses_a_bad_key(capsys: pytest.CaptureFixture[str]) -> None:
    bad = run_cli(capsys, "list", "--key", "a\nb")
    assert bad.code == 2 and bad.err.count("\n") == 1 and "key" in bad.err, bad.err
