"""`astra status METHOD ...`: of the runs a request names, how many are done, failed and
pending, group by group; nothing is run and the store is only read."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from astra_cli.cli.clickparts import ClickCommand
from astra_cli.cli.console import notice, print_json, stdout_console
from astra_cli.cli.errors import reported_errors
from astra_cli.cli.examples import status_examples
from astra_cli.cli.inputs import collect_invocation_inputs
from astra_cli.cli.invocation import Invocation
from astra_cli.cli.method_commands import MethodGroup, build_method_command
from astra_cli.cli.options import STATUS_OPTIONS, Json, ReadStoreDir, Verbose
from astra_cli.exit_codes import ExitCode
from astra_cli.io.store import DEFAULT_OUTPUT_DIR
from astra_cli.vocabulary import pairs_text

if TYPE_CHECKING:
    from astra_cli.engine.planner import Plan
    from astra_cli.methods.base import Method


def status_action(method_class: type[Method], invocation: Invocation) -> None:
    from astra_cli import api

    output_dir = invocation.planning.output_dir
    with reported_errors(invocation.report.verbose, json_document=invocation.report.json):
        inputs = collect_invocation_inputs(method_class, invocation)
        plan = api.status(
            method_class,
            inputs.observations,
            invocation.method_options,
            manifests=inputs.manifests,
            output_dir=output_dir,
            checksum=invocation.planning.checksum,
        )
        report = status_as_dict(plan, str(output_dir))
        for group in plan.groups:
            for missing in missing_files(method_class, group.options):
                notice(
                    f"group {group.key}: {missing} does not exist; `astra analyse` would refuse "
                    "it, and its runs count as pending"
                )
        if invocation.report.json:
            print_json(report)
        else:
            render_status(report)
    if report["bad_rows"]:
        raise typer.Exit(ExitCode.RUNS_FAILED)


def missing_files(method_class: type[Method], options: dict[str, Any]) -> list[str]:
    """The files the group's options name (its `Path` options) that are not there."""
    return [
        str(options[name])
        for name, param in method_class.params.items()
        if param.type is Path and options.get(name) is not None and not Path(options[name]).exists()
    ]


def status_as_dict(plan: Plan, output_dir: str) -> dict[str, Any]:
    """Per group: requested runs, and of them done (ok in the store), stale (in the store, but
    their input or model changed since), failed (failed in the store, not to be retried) and
    pending (not in the store, or failed through no fault of their own)."""
    groups = [
        {
            "key": group.key,
            "options": group.significant,
            "requested": group.requested,
            "done": group.already_done,
            "stale": group.stale,
            "failed": group.skipped_failed,
            "pending": len(group.observations) - group.stale,
        }
        for group in plan.groups
    ]
    totals = {
        "done": plan.already_done,
        "stale": plan.stale,
        "failed": plan.skipped_failed,
        "pending": plan.to_run - plan.stale,
    }
    return {
        "method": plan.method,
        "output_dir": output_dir,
        "requested": plan.requested,
        **totals,
        "bad_rows": plan.bad_rows,
        "groups": groups,
    }


def render_status(report: dict[str, Any]) -> None:
    """A table of groups on stdout: the counts are this command's result. Groups are shown as
    `astra plan` shows them: by the options that set them apart, the rest under the table."""
    from astra_cli.cli.grouptable import print_group_table

    console = stdout_console()
    console.print(
        f"{report['method']}: {report['requested']} requested in {len(report['groups'])} "
        f"group(s): {report['done']} done, {report['stale']} stale, {report['failed']} failed, "
        f"{report['pending']} pending",
        markup=False,
    )
    columns = ("requested", "done", "stale", "failed", "pending")
    print_group_table(console, report["groups"], {name: name for name in columns})


def overview_command(
    ctx: typer.Context,
    output_dir: ReadStoreDir = Path(DEFAULT_OUTPUT_DIR),
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Without a method: every method and group the store holds, with its options in full and
    its ok, failed, stale and flagged runs, and when it last ran. Reads the store only.

    With a method: `astra status METHOD ...` counts the runs a request names (see its --help).
    """
    if ctx.invoked_subcommand is not None:
        _refuse_options_before_the_method(ctx)
        return
    from astra_cli.inventory import store_overview

    with reported_errors(verbose, json_document=json):
        groups = [group.as_dict() for group in store_overview(output_dir)]
    if json:
        print_json({"output_dir": str(output_dir), "groups": groups})
    else:
        render_overview(groups, str(output_dir))


def _refuse_options_before_the_method(ctx: typer.Context) -> None:
    """`astra status -o DIR grid ...` would count the runs of the default store, not of DIR:
    the method's command takes its own options, so options given before it are refused."""
    from astra_cli.cli.clickparts import ClickUsageError, ParameterSource

    given = [
        parameter.opts[0]
        for parameter in ctx.command.params
        if parameter.name
        and ctx.get_parameter_source(parameter.name) is ParameterSource.COMMANDLINE
    ]
    if given:
        raise ClickUsageError(
            f"{', '.join(given)} before the method: give it after, "
            f"astra status {ctx.invoked_subcommand} ... {given[0]} ...",
            ctx,
        )


def render_overview(groups: list[dict[str, Any]], output_dir: str) -> None:
    """One table of counts per method, then each group's options in full (they are what
    tells two groups apart, and too long for a table's column)."""
    import datetime

    from rich import box
    from rich.table import Table

    console = stdout_console()
    if not groups:
        console.print(f"{output_dir}: no runs yet", markup=False)
    for method in dict.fromkeys(group["method"] for group in groups):
        mine = [group for group in groups if group["method"] == method]
        console.print(f"{method}: {len(mine)} group(s) in {output_dir}", markup=False)
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
        table.add_column("group", no_wrap=True)
        for column in ("ok", "failed", "stale", "flagged"):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column("last run (UTC)", no_wrap=True)
        for group in mine:
            stale = "?" if group["stale"] is None else str(group["stale"])
            last = group["last_run"]
            moment = datetime.datetime.fromtimestamp(last or 0, datetime.timezone.utc)
            when = moment.strftime("%Y-%m-%d %H:%M") if last else ""
            counts = (str(group["ok"]), str(group["failed"]), stale, str(group["flagged"]))
            table.add_row(group["key"], *counts, when)
        console.print(table)
        for group in mine:
            console.print(f"  {group['key']}: {pairs_text(group['options'])}", markup=False)


class StatusGroup(MethodGroup):
    def build(self, method_class: type[Method]) -> ClickCommand:
        return build_method_command(
            method_class,
            status_action,
            STATUS_OPTIONS,
            help_text=(
                f"Count the requested {method_class.name} runs that are done, failed and "
                f"pending, group by group; run nothing.\n\n{method_class.summary()}"
            ),
            epilog=status_examples(method_class),
        )


status_app = typer.Typer(cls=StatusGroup, invoke_without_command=True, no_args_is_help=False)
status_app.callback()(overview_command)
