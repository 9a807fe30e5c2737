"""`jobs bulk cancel|retry|requeue-dead <filters>`: count with --dry-run, else run the action here, following its
progress on stderr to the end (should this command be stopped, a web process takes the run over)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli import render
from service.cli.errors import JOB_FAILED, CliError
from service.cli.filters import (
    ActorOption,
    CreatedAfterOption,
    CreatedBeforeOption,
    KeyOption,
    ReasonOption,
    StateOption,
    job_filter,
)
from service.domain.bulk_action import BulkAction, BulkProgress, BulkState

if TYPE_CHECKING:
    from service.ops.services import Services

app = typer.Typer(
    help="Cancel, retry or requeue-dead every job a filter matches (--dry-run: count them).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def services() -> Services:
    from service import bootstrap

    return bootstrap.services()


def _bulk(
    action: BulkAction,
    key: str | None,
    actor: str | None,
    state: str | None,
    created_after: str | None,
    created_before: str | None,
    reason: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    flt = job_filter(
        key=key, actor=actor, state=state, created_after=created_after, created_before=created_before, reason=reason
    )
    if actor is not None:
        services().jobs.actor(actor)  # an unknown actor is a mistake, not "0 jobs"
    bulk = services().bulk
    if dry_run:
        count = bulk.count(flt, action)
        if as_json:
            render.emit_json({"action": action.value, "filter": flt.as_query(), "count": count})
        else:
            render.out.print(f"{action.value} would act on {count:,} jobs", markup=False)
        return

    def shown(progress: BulkProgress) -> None:
        print(
            f"{action.value}: {progress.done:,} of {progress.total:,} done ({progress.acted:,} acted on)",
            file=sys.stderr,
            flush=True,
        )

    progress = bulk.run_here(flt, action, shown)
    if as_json:
        render.emit_json(
            {
                "bulkId": progress.bulk_id,
                "action": action.value,
                "filter": flt.as_query(),
                "state": progress.state.value,
                "total": progress.total,
                "done": progress.done,
                "acted": progress.acted,
                "skipped": progress.skipped,
                "error": progress.error,
            }
        )
    else:
        text = f"{action.value}: acted on {progress.acted:,} of {progress.total:,} jobs"
        if progress.skipped:
            text += f", skipped {progress.skipped:,} that changed meanwhile"
        render.out.print(text, markup=False)
    if progress.state is BulkState.FAILED:
        raise CliError(f"bulk {progress.bulk_id} stopped: {progress.error}", JOB_FAILED)
    if progress.state is BulkState.RUNNING:  # its lease went to a web process, which goes on with it
        render.err.print(f"bulk {progress.bulk_id} goes on elsewhere: GET /jobs/bulk/{progress.bulk_id}", markup=False)


DryRun = Annotated[bool, typer.Option("--dry-run", help="Only count the jobs the action would act on.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command()
def cancel(
    key: KeyOption = None,
    actor: ActorOption = None,
    state: StateOption = None,
    created_after: CreatedAfterOption = None,
    created_before: CreatedBeforeOption = None,
    reason: ReasonOption = None,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
) -> None:
    """Cancel the matching queued and delayed jobs; ask the active ones to stop."""
    _bulk(BulkAction.CANCEL, key, actor, state, created_after, created_before, reason, dry_run, as_json)


@app.command()
def retry(
    key: KeyOption = None,
    actor: ActorOption = None,
    state: StateOption = None,
    created_after: CreatedAfterOption = None,
    created_before: CreatedBeforeOption = None,
    reason: ReasonOption = None,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
) -> None:
    """Run the matching failed and cancelled jobs again, under the same ids."""
    _bulk(BulkAction.RETRY, key, actor, state, created_after, created_before, reason, dry_run, as_json)


@app.command("requeue-dead")
def requeue_dead(
    key: KeyOption = None,
    actor: ActorOption = None,
    state: StateOption = None,
    created_after: CreatedAfterOption = None,
    created_before: CreatedBeforeOption = None,
    reason: ReasonOption = None,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
) -> None:
    """Send the dead letters of the matching jobs back to their queues for another try."""
    _bulk(BulkAction.REQUEUE_DEAD, key, actor, state, created_after, created_before, reason, dry_run, as_json)
