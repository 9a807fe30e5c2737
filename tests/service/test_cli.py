"""The `jobs` command line against real RabbitMQ, Redis and a worker: output, --json, and one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from service.bootstrap import broker
from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.support import ops_actors, test_actors
from tests.support.cli import run_cli, run_jobs
from tests.support.workers import WorkerProcess

assert ops_actors.ops_step.queue_name == "ops"  # declared here too: the in-process CLI sees this process's actors


@pytest.fixture(autouse=True)
def empty_ops_queue() -> Iterator[None]:
    """Jobs that must wait (delayed, never run) go to "ops", which no shared worker consumes, and are dropped after
    each test: a delayed message left on a consumed queue would run in a later test."""
    yield
    broker.flush("ops")


def assert_one_line_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], err


def test_the_real_jobs_executable_sends_a_job_waits_for_it_and_shows_it(worker: WorkerProcess) -> None:
    sent = run_jobs("send", "ping", '{"hello": "world"}', "--wait", "--json")
    assert sent.code == 0, sent.err
    record = json.loads(sent.out)
    assert record["state"] == "completed"
    assert record["result"] == {"hello": "world"}

    shown = run_jobs("show", record["jobId"])
    assert shown.code == 0, shown.err
    assert record["jobId"] in shown.out and "completed" in shown.out and '"hello": "world"' in shown.out
    assert all(len(line) <= 80 for line in shown.out.splitlines()), shown.out


def test_send_prints_the_state_and_id_and_the_job_runs(
    capsys: pytest.CaptureFixture[str], jobs: Jobs, worker: WorkerProcess
) -> None:
    sent = run_cli(capsys, "send", "add", '{"a": 2, "b": 40}')
    assert sent.code == 0, sent.err
    state, job_id = sent.out.split()
    assert state == "queued"
    assert jobs.wait(job_id, timeout_s=15).result == 42


def test_send_with_priority_and_delay_records_both(capsys: pytest.CaptureFixture[str], jobs: Jobs) -> None:
    sent = run_cli(capsys, "send", "ops_step", '{"key": "p"}', "--priority", "high", "--delay", "60000", "--json")
    assert sent.code == 0, sent.err
    answer = json.loads(sent.out)
    assert answer["status"] == "delayed"
    record = jobs.get(answer["jobId"])
    assert record.state is JobState.DELAYED and record.priority == "high"
    jobs.cancel(answer["jobId"])


def test_send_wait_follows_the_progress_messages_and_exits_zero(
    capsys: pytest.CaptureFixture[str], worker: WorkerProcess
) -> None:
    sent = run_cli(capsys, "send", "slow", '{"key": "cli-wait", "seconds": 1.5, "steps": 5}', "--wait")
    assert sent.code == 0, sent.err
    assert "completed" in sent.out and "result: 5" in sent.out
    # Not a terminal, so one line per change instead of a redrawn bar.
    assert "step 2 of 5" in sent.err and "100%" in sent.err, sent.err


def test_send_wait_exits_one_and_prints_the_reason_when_the_job_fails(
    capsys: pytest.CaptureFixture[str], worker: WorkerProcess
) -> None:
    sent = run_cli(capsys, "send", "flaky", '{"key": "cli-fail", "failures": 99}', "--wait")
    assert sent.code == 1
    assert "failed: RuntimeError: planned failure 4" in sent.err


def test_send_wait_gives_up_after_its_timeout(capsys: pytest.CaptureFixture[str], jobs: Jobs) -> None:
    sent = run_cli(capsys, "send", "ops_step", '{"key": "t"}', "--delay", "60000", "--wait", "--timeout", "0.5")
    assert sent.code == 1
    progress, error = sent.err.strip().splitlines()
    assert progress.strip() == "0% delayed"
    assert_one_line_error(error, "gave up waiting after 0.5s", "delayed")


def test_an_unknown_actor_is_one_line_and_exit_status_two() -> None:
    done = run_jobs("send", "no_such_actor", "{}")
    assert done.code == 2
    assert_one_line_error(done.err, "unknown actor 'no_such_actor'")


def test_invalid_json_is_one_line_and_exit_status_two() -> None:
    done = run_jobs("send", "ping", "{not json")
    assert done.code == 2
    assert_one_line_error(done.err, "invalid JSON payload")
    not_object = run_jobs("send", "ping", "[1, 2]")
    assert not_object.code == 2
    assert_one_line_error(not_object.err, "expected an object, got list")


def test_an_invalid_payload_names_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    done = run_cli(capsys, "send", "add", '{"a": "x"}')
    assert done.code == 2
    assert_one_line_error(done.err, "a: Input should be a valid integer", "b: Field required")


def test_an_unreachable_broker_is_one_line_exit_status_four_and_hides_the_password() -> None:
    done = run_jobs("send", "ping", "{}", env={"RABBITMQ_URL": "amqp://guest:hunter2-secret@127.0.0.1:1/"})
    assert done.code == 4
    assert_one_line_error(done.err, "rabbitmq unreachable")
    assert "hunter2-secret" not in done.err + done.out


def test_an_unreachable_job_store_is_one_line_and_exit_status_four() -> None:
    done = run_jobs("list", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert done.code == 4
    assert_one_line_error(done.err, "redis unreachable")


def test_a_bad_option_is_one_line_and_exit_status_two() -> None:
    done = run_jobs("send", "ping", "{}", "--priority", "urgent")
    assert done.code == 2
    assert_one_line_error(done.err, "urgent")
    missing = run_jobs("show")
    assert missing.code == 2
    assert_one_line_error(missing.err, "Missing argument 'job_id'")


def test_help_lists_every_command_of_the_contract() -> None:
    done = run_jobs("--help")
    assert done.code == 0
    for command in (
        "send",
        "show",
        "list",
        "cancel",
        "retry",
        "queues",
        "pause",
        "resume",
        "purge",
        "dead",
        "requeue-dead",
        "schedules",
    ):
        assert command in done.out, command


def test_show_of_an_unknown_job_says_so_with_exit_status_three(capsys: pytest.CaptureFixture[str]) -> None:
    done = run_cli(capsys, "show", "00000000-0000-0000-0000-000000000000")
    assert done.code == 3
    assert_one_line_error(done.err, "job not found")


def test_show_of_a_failed_job_prints_the_reason_and_traceback(
    capsys: pytest.CaptureFixture[str], jobs: Jobs, worker: WorkerProcess
) -> None:
    job_id = test_actors.flaky.send(key="cli-show", failures=99).message_id
    jobs.wait(job_id, timeout_s=20)
    shown = run_cli(capsys, "show", job_id)
    assert shown.code == 0
    assert "RuntimeError: planned failure 4" in shown.out
    assert "Traceback (most recent call last)" in shown.out
    as_json = json.loads(run_cli(capsys, "show", job_id, "--json").out)
    assert as_json["state"] == "failed" and as_json["attempts"] == 4


def test_list_filters_by_state_and_actor_and_fits_eighty_columns(
    capsys: pytest.CaptureFixture[str], jobs: Jobs, worker: WorkerProcess
) -> None:
    done_id = test_actors.add.send(a=1, b=2).message_id
    jobs.wait(done_id, timeout_s=15)
    waiting_id = jobs.enqueue("ops_step", {"key": "later"}, delay_ms=60_000).job_id

    table = run_cli(capsys, "list")
    assert table.code == 0
    assert done_id in table.out and waiting_id in table.out
    assert all(len(line) <= 80 for line in table.out.splitlines()), table.out

    delayed = json.loads(run_cli(capsys, "list", "--state", "delayed", "--json").out)
    assert [j["jobId"] for j in delayed["jobs"]] == [waiting_id]
    by_actor = json.loads(run_cli(capsys, "list", "--actor", "add", "--json").out)
    assert [j["jobId"] for j in by_actor["jobs"]] == [done_id]

    bad_state = run_cli(capsys, "list", "--state", "sleeping")
    assert bad_state.code == 2
    assert_one_line_error(bad_state.err, "sleeping")
    bad_actor = run_cli(capsys, "list", "--actor", "nobody")
    assert bad_actor.code == 2
    assert_one_line_error(bad_actor.err, "unknown actor 'nobody'")
    jobs.cancel(waiting_id)


def test_list_pages_with_a_cursor(capsys: pytest.CaptureFixture[str], jobs: Jobs) -> None:
    ids = [jobs.enqueue("ops_step", {"key": f"page{i}"}, delay_ms=60_000).job_id for i in range(3)]
    first = json.loads(run_cli(capsys, "list", "--limit", "2", "--json").out)
    assert len(first["jobs"]) == 2 and first["next"]
    second = json.loads(run_cli(capsys, "list", "--limit", "2", "--cursor", first["next"], "--json").out)
    seen = [j["jobId"] for j in first["jobs"] + second["jobs"]]
    assert sorted(seen) == sorted(ids)
    human = run_cli(capsys, "list", "--limit", "2")
    assert f"more: jobs list --cursor {first['next']}" in human.out
    for job_id in ids:
        jobs.cancel(job_id)


def test_cancel_stops_a_waiting_job_and_refuses_a_finished_one(
    capsys: pytest.CaptureFixture[str], jobs: Jobs, worker: WorkerProcess
) -> None:
    job_id = jobs.enqueue("ops_step", {"key": "cancel-me"}, delay_ms=60_000).job_id
    done = run_cli(capsys, "cancel", job_id)
    assert done.code == 0 and done.out.strip() == f"cancelled {job_id}"
    assert jobs.get(job_id).state is JobState.CANCELLED
    finished = test_actors.add.send(a=1, b=1).message_id
    jobs.wait(finished, timeout_s=15)
    refused = run_cli(capsys, "cancel", finished, "--json")
    assert refused.code == 3
    assert_one_line_error(refused.err, "already completed")


def test_retry_runs_a_failed_job_again_under_the_same_id(
    capsys: pytest.CaptureFixture[str], jobs: Jobs, worker: WorkerProcess
) -> None:
    job_id = test_actors.flaky.send(key="cli-retry", failures=4).message_id
    assert jobs.wait(job_id, timeout_s=20).state is JobState.FAILED
    done = run_cli(capsys, "retry", job_id)
    assert done.code == 0 and done.out.strip() == f"queued {job_id}"
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.COMPLETED and record.result == 5
    refused = run_cli(capsys, "retry", job_id)
    assert refused.code == 3
    assert_one_line_error(refused.err, "only failed or cancelled jobs can be retried")


def test_retry_failed_reruns_every_failed_job_of_an_actor(
    capsys: pytest.CaptureFixture[str], jobs: Jobs, worker: WorkerProcess
) -> None:
    flaky_ids = [test_actors.flaky.send(key=f"cli-all-{i}", failures=4).message_id for i in range(3)]
    other = test_actors.stuck.send(seconds=5).message_id
    for job_id in [*flaky_ids, other]:
        assert jobs.wait(job_id, timeout_s=20).state is JobState.FAILED
    done = run_cli(capsys, "retry", "--failed", "--actor", "flaky", "--json")
    assert done.code == 0, done.err
    assert sorted(json.loads(done.out)["retried"]) == sorted(flaky_ids)
    for job_id in flaky_ids:
        assert jobs.wait(job_id, timeout_s=20).state is JobState.COMPLETED
    assert jobs.get(other).state is JobState.FAILED  # another actor's job was left alone


def test_retry_needs_an_id_or_failed_but_not_both(capsys: pytest.CaptureFixture[str]) -> None:
    neither = run_cli(capsys, "retry")
    assert neither.code == 2
    assert_one_line_error(neither.err, "give a job id, or --failed")
    both = run_cli(capsys, "retry", "some-id", "--failed")
    assert both.code == 2


def test_pause_and_resume_name_a_known_queue(capsys: pytest.CaptureFixture[str]) -> None:
    unknown = run_cli(capsys, "pause", "nowhere")
    assert unknown.code == 2
    assert_one_line_error(unknown.err, "unknown queue 'nowhere'")
    paused = run_cli(capsys, "pause", "test-limited", "--json")
    assert paused.code == 0 and json.loads(paused.out) == {"queue": "test-limited", "paused": True}
    resumed = run_cli(capsys, "resume", "test-limited")
    assert resumed.code == 0 and resumed.out.strip() == "resumed test-limited"


def test_queues_shows_every_queue_with_its_figures_in_eighty_columns(
    capsys: pytest.CaptureFixture[str], jobs: Jobs
) -> None:
    waiting = jobs.enqueue("ops_step", {"key": "queues"}, delay_ms=60_000).job_id
    assert run_cli(capsys, "pause", "test-limited").code == 0
    try:
        figures = {q["name"]: q for q in json.loads(run_cli(capsys, "queues", "--json").out)}
        assert {"default", "test", "test-limited", "ops"} <= set(figures)
        assert figures["ops"]["delayed"] >= 1
        assert figures["test-limited"]["paused"] is True and figures["test"]["paused"] is False
        assert set(figures["test"]) >= {"waiting", "active", "completed", "failed", "delayed", "dead", "paused"}
        table = run_cli(capsys, "queues")
        assert table.code == 0
        assert all(len(line) <= 80 for line in table.out.splitlines()), table.out
        limited = next(line for line in table.out.splitlines() if line.startswith("test-limited"))
        assert limited.rstrip().endswith("paused")
    finally:
        run_cli(capsys, "resume", "test-limited")
        jobs.cancel(waiting)


def test_purge_wants_yes_then_drops_waiting_jobs_and_cancels_them(
    capsys: pytest.CaptureFixture[str], jobs: Jobs
) -> None:
    ids = [jobs.enqueue("ops_step", {"key": "purge", "seconds": 0}).job_id for _ in range(3)]
    refused = run_cli(capsys, "purge", "ops")
    assert refused.code == 2
    assert_one_line_error(refused.err, "add --yes to confirm")
    assert all(jobs.get(i).state is JobState.QUEUED for i in ids)

    done = run_cli(capsys, "purge", "ops", "--yes", "--json")
    assert done.code == 0, done.err
    assert json.loads(done.out) == {"queue": "ops", "messages": 3, "cancelled": 3}
    assert all(jobs.get(i).state is JobState.CANCELLED for i in ids)
    unknown = run_cli(capsys, "purge", "nowhere", "--yes")
    assert unknown.code == 2
    assert_one_line_error(unknown.err, "unknown queue 'nowhere'")


def test_send_wait_draws_a_live_progress_bar_on_a_terminal(worker: WorkerProcess) -> None:
    done = run_jobs("send", "ping", '{"n": 1}', "--wait", env={"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"})
    assert done.code == 0, done.err
    assert "\x1b[" in done.err  # drawn with terminal control codes, redrawn in place
    assert "completed" in done.err and "100%" in done.err
    assert done.out.startswith("completed ") and 'result: {"n": 1}' in done.out


def test_events_prints_a_jobs_changes_and_follows_the_stream_until_it_ends(
    capsys: pytest.CaptureFixture[str], jobs: Jobs, worker: WorkerProcess
) -> None:
    job_id = test_actors.flaky.send(key="cli-events", failures=1).message_id
    followed = run_cli(capsys, "events", job_id, "--follow", "--timeout", "20", "--json")  # returns at its end
    assert followed.code == 0
    events = [json.loads(line) for line in followed.out.splitlines()]
    states = [e["state"] for e in events if e["state"] != "queued"]  # queued may lose the race to active
    assert states == ["active", "delayed", "active", "completed"], followed.out
    assert all(e["jobId"] == job_id for e in events)
    shown = run_cli(capsys, "events", job_id)
    assert shown.code == 0 and "completed" in shown.out.splitlines()[-1] and job_id in shown.out
    recent = run_cli(capsys, "events", "--limit", "2", "--json")
    assert [json.loads(line)["eventId"] for line in recent.out.splitlines()] == [e["eventId"] for e in events[-2:]]
    missing = run_cli(capsys, "events", "00000000-0000-0000-0000-000000000000")
    assert missing.code == 3
    assert_one_line_error(missing.err, "job not found")
