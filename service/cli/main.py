"""`jobs` commands: parse, call the service layer (the same one the API uses), print."""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import sys
from collections.abc import Sequence
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from service.cli import bulk, filters, render
from service.cli.errors import BAD_INPUT, JOB_FAILED, OK, CliError, fail
from service.cli.waiting import wait_with_progress
from service.domain.job_filter import InvalidFilter
from service.domain.states import FINAL_STATES, JobState, Priority
from service.ops.dead_jobs import RequeueProgress
from service.ops.event_log import Event
from service.ops.unavailable import mapped, store_call

if TYPE_CHECKING:
    from service.ops.services import Services  # built by the composition root, on first use

app = typer.Typer(
    name="jobs",
    help="Send, watch and steer background jobs.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
app.add_typer(bulk.app, name="bulk")


def confirmation(consequence: str) -> Any:
    """The --yes option of a command that cannot be undone; its help says what would happen."""
    return typer.Option("--yes", help=f"Confirm: {consequence}.")


def confirmed(yes: bool, refusal: str) -> None:
    """Without --yes, such a command says what it would do, and does nothing."""
    if not yes:
        raise CliError(f"{refusal}; add --yes to confirm", BAD_INPUT)


def services() -> Services:
    """The composition root's, on first use: `jobs --help` and usage errors never read the settings, nor touch
    RabbitMQ or Redis."""
    from service import bootstrap

    return bootstrap.services()


_quiet: ContextVar[bool] = ContextVar("quiet", default=True)


def _quieten() -> None:
    # Log lines on stderr would break "one line per error"; --verbose keeps them.
    if _quiet.get():
        logging.disable(logging.CRITICAL)


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show log lines on stderr.")] = False,
) -> None:
    """Options for every command (main() reads --verbose before the command runs)."""


def parse_payload(text: str) -> dict[str, Any]:
    source = sys.stdin.read() if text == "-" else Path(text[1:]).read_text() if text.startswith("@") else text
    payload = json.loads(source)
    if not isinstance(payload, dict):
        raise CliError(f"invalid JSON payload: expected an object, got {type(payload).__name__}", BAD_INPUT)
    return payload


# -- jobs ------------------------------------------------------------------------------------------------------


@app.command()
def send(
    actor: Annotated[str, typer.Argument(help="The job to run, e.g. send_email.")],
    payload: Annotated[str, typer.Argument(help="JSON object, '-' for stdin or @file.json.")] = "{}",
    priority: Annotated[Priority | None, typer.Option(help="low, normal or high.")] = None,
    delay: Annotated[int | None, typer.Option(min=0, help="Run no sooner than this many ms from now.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until the job ends; exit 1 if it fails.")] = False,
    timeout: Annotated[float | None, typer.Option(min=0, help="With --wait: give up after this many seconds.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="The same key again returns the same job.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Enqueue a job."""
    data = parse_payload(payload)
    jobs = services().jobs
    enqueued = jobs.enqueue(actor, data, priority=priority, delay_ms=delay or None, idempotency_key=idempotency_key)
    if not wait:
        if as_json:
            render.emit_json({"jobId": enqueued.job_id, "status": enqueued.state.value})
        else:
            render.out.print(f"{enqueued.state.value} {enqueued.job_id}")
        return
    record = wait_with_progress(jobs, enqueued.job_id, timeout, show=not as_json or render.err.is_terminal)
    if as_json:
        render.emit_json(record.model_dump(mode="json"))
    elif record.state is JobState.COMPLETED:
        render.out.print(f"completed {record.jobId}  result: {render.short_json(record.result)}")
    if record.state is not JobState.COMPLETED:
        print(f"{record.state.value}: {record.failedReason or 'no reason recorded'}", file=sys.stderr)
        raise typer.Exit(JOB_FAILED)


@app.command()
def show(job_id: str, as_json: JsonFlag = False) -> None:
    """Show one job: state, progress, payload, result, failure."""
    record = services().jobs.get(job_id)
    if as_json:
        render.emit_json(record.model_dump(mode="json"))
        return
    render.out.print(render.record_table(record))
    if record.traceback and record.state is JobState.FAILED:
        render.out.print("\n" + record.traceback.rstrip(), markup=False)


@app.command()
def logs(
    job_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print new lines as they come, until the job ends.")
    ] = False,
    timeout: Annotated[float | None, typer.Option(min=0, help="With --follow: stop after this many seconds.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line, for scripts.")] = False,
) -> None:
    """Show the lines a job's own code logged (the last JOB_LOG_LINES), oldest first."""
    book = services().job_logs
    lines = book.follow(job_id, timeout_s=timeout) if follow else iter(book.page(job_id).lines)
    for line in lines:
        if as_json:
            render.emit_json(line.as_json())
        else:
            print(f"{line.at[11:23]} {line.level.upper():<7} {line.logger} [attempt {line.attempt}]: {line.message}")
        sys.stdout.flush()


def _created_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000) if iso else 0


@app.command()
def events(
    job_id: Annotated[str | None, typer.Argument(help="Only this job's events (all jobs' when left out).")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Then print new events as they come (a job's: until it ends).")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Without JOB_ID: how many recent events.")] = 20,
    timeout: Annotated[float | None, typer.Option(min=0, help="With --follow: stop after this many seconds.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line, for scripts.")] = False,
) -> None:
    """Show lifecycle events from the Redis stream, oldest first: a job's, or the most recent of all jobs."""
    log = services().event_log
    if job_id is not None:
        record = services().jobs.get(job_id)  # an unknown job is an error, not an empty list
        shown = store_call(lambda: log.of_job(job_id, _created_ms(record.createdAt)))
        finished = bool(shown) and shown[-1].state in {s.value for s in FINAL_STATES}
    else:
        shown = store_call(lambda: log.recent(limit))
        finished = False
    start = shown[-1].event_id if shown else store_call(log.last_id)
    for event in shown:
        _print_event(event, as_json)
    if follow and not finished:
        with mapped():
            for event in log.follow(start, job_id=job_id, timeout_s=timeout):
                _print_event(event, as_json)


def _print_event(event: Event, as_json: bool) -> None:
    if as_json:
        render.emit_json(event.as_json())
    else:
        steps = f"run {event.run or 0} retry {event.retry or 0}" + (
            f" attempt {event.attempt}" if event.attempt else ""
        )
        error = f"  {event.error}" if event.error else ""
        print(f"{event.at}  {event.event_id}  {event.actor}  {event.job_id}  {event.state:<9}  {steps}{error}")
    sys.stdout.flush()


@app.command("list")
def list_jobs(
    state: filters.StateOption = None,
    actor: filters.ActorOption = None,
    key: filters.KeyOption = None,
    created_after: filters.CreatedAfterOption = None,
    created_before: filters.CreatedBeforeOption = None,
    reason: filters.ReasonOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 20,
    cursor: Annotated[str | None, typer.Option(help="Continue after a previous page.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List and search jobs, newest first. A page examines a bounded number of jobs: with rare matches it may come
    back short, with the --cursor of the next page."""
    given = {"key": key, "actor": actor, "state": state, "created_after": created_after}
    given |= {"created_before": created_before, "reason": reason}
    flt = filters.job_filter(**given)
    if actor is not None:
        services().jobs.actor(actor)
    try:
        page = services().jobs.search(flt, limit=limit, cursor=cursor)
    except InvalidFilter as error:
        raise filters.worded(error) from None
    if as_json:
        render.emit_json({"jobs": [j.model_dump(mode="json") for j in page.jobs], "next": page.next})
        return
    if page.jobs:
        render.out.print(render.jobs_table(page.jobs))
    else:
        render.out.print("no jobs" + (" on this page" if page.next else ""))
    if page.next:
        options = " ".join(f"{filters.OPTIONS[name]} {shlex.quote(value)}" for name, value in flt.as_query().items())
        # One line however long, so it can be copied as a command.
        line = f"more: jobs list {options + ' ' if options else ''}--cursor {page.next}"
        render.out.print(line, markup=False, soft_wrap=True)


@app.command()
def cancel(job_id: str, as_json: JsonFlag = False) -> None:
    """Cancel a queued or delayed job, or ask an active one to stop."""
    outcome = services().jobs.cancel(job_id)
    if as_json:
        render.emit_json({"jobId": job_id, "status": outcome})
    else:
        render.out.print(f"{outcome} {job_id}" + (" (asked to stop)" if outcome == "cancelling" else ""))


@app.command()
def retry(
    job_id: Annotated[str | None, typer.Argument(help="The failed or cancelled job to run again.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Retry every failed job.")] = False,
    actor: Annotated[str | None, typer.Option(help="With --failed: only this actor's jobs.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a failed or cancelled job again, under the same id."""
    if (job_id is None) == (not failed):
        raise CliError("give a job id, or --failed (not both)", BAD_INPUT)
    if actor is not None and not failed:
        raise CliError("--actor goes with --failed", BAD_INPUT)
    if job_id is not None:
        # Reopened as queued; by the time this prints, a worker may have it already.
        record = services().jobs.retry(job_id)
        _said({"jobId": record.jobId, "status": "queued"}, f"queued {record.jobId}", as_json)
        return
    outcome = services().queues.retry_failed(actor=actor)
    if as_json:
        render.emit_json({"retried": outcome.retried, "skipped": outcome.skipped})
    else:
        render.out.print(f"retried {len(outcome.retried)} failed jobs" + _skipped(outcome.skipped))


def _skipped(count: int) -> str:
    return f", skipped {count} that changed meanwhile" if count else ""


# -- queues ----------------------------------------------------------------------------------------------------


@app.command()
def queues(as_json: JsonFlag = False) -> None:
    """Every queue: waiting, active, delayed, completed, failed, dead, paused."""
    figures = services().queues.figures()
    if as_json:
        render.emit_json([dataclasses.asdict(f) for f in figures])
        return
    numbers = ("WAITING", "ACTIVE", "DELAYED", "COMPLETED", "FAILED", "DEAD")
    grid = render.table("QUEUE", *numbers, "PAUSED", right=numbers)
    for f in figures:
        counts = (f.waiting, f.active, f.delayed, f.completed, f.failed, f.dead)
        grid.add_row(f.name, *map(str, counts), "paused" if f.paused else "-")
    render.out.print(grid)


@app.command()
def purge(
    queue: str,
    yes: Annotated[bool, confirmation("waiting jobs are dropped and marked cancelled")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Empty a queue and its delay queue; their waiting jobs end cancelled (running jobs finish)."""
    confirmed(yes, f"purge drops every waiting job of {queue}")
    purged = services().queues.purge(queue)
    text = f"purged {purged.queue}: {purged.messages} messages removed, {purged.cancelled} jobs cancelled"
    _said(dataclasses.asdict(purged), text, as_json)


@app.command()
def pause(queue: str, as_json: JsonFlag = False) -> None:
    """Stop every worker from starting jobs of a queue (they stay in RabbitMQ)."""
    services().queues.pause(queue)
    _said({"queue": queue, "paused": True}, f"paused {queue}", as_json)


@app.command()
def resume(queue: str, as_json: JsonFlag = False) -> None:
    """Let workers take jobs from a paused queue again."""
    services().queues.resume(queue)
    _said({"queue": queue, "paused": False}, f"resumed {queue}", as_json)


@app.command()
def dead(
    queue: str,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Show at most this many.")] = 100,
    offset: Annotated[int, typer.Option(min=0, max=60_000, help="Skip this many, from the oldest.")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """List the messages in a queue's dead-letter queue, oldest first (they stay there)."""
    page = services().queues.dead.page(queue, offset, limit)
    if as_json:
        render.emit_json(
            {
                "queue": queue,
                "count": page.total,
                "offset": page.offset,
                "next": page.next,
                "messages": [
                    {
                        "jobId": d.job_id,
                        "actor": d.actor,
                        "reason": d.reason,
                        "deadAt": d.dead_at,
                        "state": d.state.value if d.state else None,
                        "preview": d.preview,
                    }
                    for d in page.items
                ],
            }
        )
        return
    if not page.items:
        render.out.print(f"no dead messages in {queue}" + (f" past {offset}" if offset and page.total else ""))
        return
    grid = render.table("JOB ID", "ACTOR", "REASON")
    for item in page.items:
        grid.add_row(item.job_id, item.actor, item.reason)
    render.out.print(grid)
    if page.next is not None:
        render.out.print(
            f"showing {offset + 1}-{page.next} of {page.total}; more: jobs dead {queue} --offset {page.next}"
        )


JobOption = Annotated[list[str] | None, typer.Option("--job", help="Only this job (repeat for more); default: all.")]


@app.command("requeue-dead")
def requeue_dead(queue: str, job: JobOption = None, as_json: JsonFlag = False) -> None:
    """Put a queue's dead messages (all, or those of --job) back for another try; prints progress on stderr."""
    dead_jobs = services().queues.dead
    value: dict[str, Any] = {"queue": queue}
    if job:
        outcome = dead_jobs.requeue(queue, job)
        requeued, stale, kept = outcome.requeued, outcome.stale, outcome.kept
        value["missing"] = outcome.missing
    else:

        def shown(progress: RequeueProgress) -> None:
            print(f"requeue {queue}: {progress.handled} of {progress.total} done", file=sys.stderr, flush=True)

        progress = dead_jobs.requeue_all(queue, shown=shown)
        requeued, stale, kept = progress.requeued, progress.stale, progress.kept
    value |= {"requeued": requeued, "stale": stale, "kept": kept}
    text = f"requeued {requeued} dead messages of {queue}"
    if stale:
        text += f", dropped {stale} whose job had already run again"
    if kept:
        text += f", left {kept} that cannot run here"
    if value.get("missing"):
        text += f"; no dead letter for {', '.join(value['missing'])}"
    _said({k: value[k] for k in ("queue", "requeued", "stale", "kept", "missing") if k in value}, text, as_json)


@app.command("delete-dead")
def delete_dead(
    queue: str,
    job: JobOption = None,
    yes: Annotated[bool, confirmation("the dead messages are gone for good")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Remove a queue's dead messages (all, or those of --job) for good; their jobs' records stay failed."""
    which = "the dead letters of " + ", ".join(job) if job else f"every dead letter of {queue}"
    confirmed(yes, f"delete-dead removes {which} for good")
    outcome = services().queues.dead.delete(queue, job or None)
    text = f"deleted {outcome.deleted} dead messages of {queue}"
    if outcome.missing:
        text += f"; no dead letter for {', '.join(outcome.missing)}"
    _said({"queue": queue, "deleted": outcome.deleted, "missing": outcome.missing}, text, as_json)


# -- schedules -------------------------------------------------------------------------------------------------


@app.command()
def schedules(as_json: JsonFlag = False) -> None:
    """Every schedule: its cron expression (or off), next run, last run and that run's job id."""
    views = services().schedules.list()
    if as_json:
        render.emit_json([view.as_json() for view in views])
        return
    # Ticks are whole minutes, so "MM-DD HH:MM" is exact, and leaves room for the job id in 80 columns.
    grid = render.table("ACTOR", "CRON", "NEXT RUN", "LAST RUN", "LAST JOB ID")
    grid.columns[-1].overflow = "fold"  # a narrow terminal breaks the id over two lines rather than cutting it
    for view in views:
        last = view.state
        grid.add_row(
            view.actor, view.cron, _minute(view.next_run_at), _minute(last.last_run_at), last.last_job_id or "-"
        )
    render.out.print(grid)
    zoned = "".join(f", {v.actor}'s in {v.timezone}" for v in views if v.timezone != "UTC")
    render.out.print(f"run times in UTC; cron read in UTC{zoned}", markup=False)


def _minute(iso: str | None) -> str:
    return render.when(iso)[:11]


def _said(value: dict[str, Any], text: str, as_json: bool) -> None:
    if as_json:
        render.emit_json(value)
    else:
        render.out.print(text, markup=False)


# -- delayed jobs ----------------------------------------------------------------------------------------------


@app.command()
def delayed(
    queue: str,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Show at most this many, soonest due first.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """List a queue's delayed jobs (delays and retries waiting for their time), soonest due first."""
    page = services().queues.delayed.list(queue, limit=limit)
    if as_json:
        # The same keys as GET /queues/{name}/delayed.
        rows = [
            {"jobId": j.job_id, "actor": j.actor, "dueAt": j.due_at, "createdAt": j.created_at, "run": j.run,
             "retry": j.retries, "attempts": j.attempts, "lastError": j.last_error}
            for j in page.jobs
        ]  # fmt: skip
        render.emit_json({"queue": page.queue, "total": page.total, "jobs": rows})
        return
    if not page.jobs:
        render.out.print(f"no delayed jobs in {queue}", markup=False)
        return
    grid = render.table("JOB ID", "ACTOR", "DUE (UTC)", "RETRY", "LAST ERROR", right=("RETRY",))
    for job in page.jobs:
        grid.add_row(job.job_id, job.actor, render.when(job.due_at), str(job.retries), job.last_error or "-")
    render.out.print(grid)
    if page.total > len(page.jobs):
        render.out.print(f"showing {len(page.jobs)} of {page.total}", markup=False)


@app.command("run-now")
def run_now(queue: str, job: JobOption = None, as_json: JsonFlag = False) -> None:
    """Run a queue's delayed jobs now (all, or each --job): each runs once; its delayed copy is skipped when due."""
    handled = services().queues.delayed.run_now(queue, job)
    text = f"{handled.count} delayed jobs of {queue} sent to run now" + _not_delayed(handled.skipped)
    _said(dataclasses.asdict(handled), text, as_json)


@app.command("cancel-delayed")
def cancel_delayed(
    queue: str,
    job: JobOption = None,
    yes: Annotated[bool, confirmation("the jobs never run")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a queue's delayed jobs (all, or each --job): they never run."""
    confirmed(yes, f"cancel-delayed cancels {'the given delayed jobs' if job else 'every delayed job'} of {queue}")
    handled = services().queues.delayed.cancel(queue, job)
    _said(
        dataclasses.asdict(handled),
        f"cancelled {handled.count} delayed jobs of {queue}" + _not_delayed(handled.skipped),
        as_json,
    )


def _not_delayed(count: int) -> str:
    return f", skipped {count} not delayed in this queue" if count else ""


# -- entry point -----------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Console script. Exit statuses are in service.cli.errors; nothing ever ends in a traceback."""
    command = typer.main.get_command(app)
    args = list(argv) if argv is not None else sys.argv[1:]
    _quiet.set("-v" not in args and "--verbose" not in args)
    _quieten()
    try:
        code = command.main(args=args, prog_name="jobs", standalone_mode=False)
    except typer.Exit as stop:
        code = stop.exit_code
    except typer.Abort:
        print("error: interrupted", file=sys.stderr)
        code = 130
    except (Exception, KeyboardInterrupt) as error:  # the one place every error becomes a line
        code = 130 if isinstance(error, KeyboardInterrupt) else fail(error)
    finally:
        logging.disable(logging.NOTSET)
    sys.exit(code if isinstance(code, int) else OK)


__all__ = ["app", "main"]
