"""`astra plan METHOD ...`: the groups and chunks a request makes, nothing run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from astra_cli.cli.clickparts import ClickCommand
from astra_cli.cli.console import print_json, stderr_console, stdout_console
from astra_cli.cli.errors import reported_errors
from astra_cli.cli.examples import plan_examples
from astra_cli.cli.inputs import prepare_invocation
from astra_cli.cli.invocation import Invocation
from astra_cli.cli.method_commands import MethodGroup, build_method_command
from astra_cli.cli.options import PLAN_OPTIONS
from astra_cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from astra_cli.engine.planner import Group, Plan
    from astra_cli.methods.base import Method


def plan_action(method_class: type[Method], invocation: Invocation) -> None:
    with reported_errors(invocation.report.verbose, json_document=invocation.report.json):
        plan = prepare_invocation(method_class, invocation, jobs=invocation.planning.jobs)
        if invocation.report.json:
            print_json({**plan_as_dict(plan), "bad_rows": plan.bad_rows})
        else:
            for stage in plan.upstream:
                render_plan(stage, heading=f"first, for {plan.method}:")
            render_plan(plan)
    if plan.bad_rows:
        raise typer.Exit(ExitCode.RUNS_FAILED)


def plan_as_dict(plan: Plan) -> dict[str, Any]:
    sizes: dict[str, list[int]] = {}
    for chunk in plan.chunks:
        sizes.setdefault(chunk.group_key, []).append(len(chunk.observations))
    return {
        "method": plan.method,
        "requested": plan.requested,
        "already_done": plan.already_done,
        "skipped_failed": plan.skipped_failed,
        "stale": plan.stale,
        "retried": plan.retried,
        "to_run": plan.to_run,
        "chunk_size": plan.chunk_size,
        "groups": [
            {
                "key": group.key,
                "options": group.significant,
                "insignificant_options": {
                    name: value
                    for name, value in group.options.items()
                    if name not in group.significant
                },
                "requested": group.requested,
                "already_done": group.already_done,
                "skipped_failed": group.skipped_failed,
                "stale": group.stale,
                "retried": group.retried,
                "to_run": len(group.observations),
                "chunks": sizes.get(group.key, []),
                "notes": group_notes(plan.method, group),
            }
            for group in plan.groups
        ],
        "upstream": [plan_as_dict(stage) for stage in plan.upstream],
    }


def group_notes(method: str, group: Group) -> list[str]:
    """What the method says about how it will analyse the group (`Method.plan_notes`: a
    grid's search, say). Asked here, not by the planner, since it reads the model's header
    (astropy, numpy), which `astra analyse` has no use for before its workers start."""
    from astra_cli.methods.registry import load_method

    return load_method(method)(**group.options).plan_notes()


def render_plan(plan: Plan, heading: str = "") -> None:
    """A table of groups on stdout: the plan is this command's result. Each group by the
    options that set it apart (paths by their distinguishing end), and under the table what
    every group shares and the paths in full (`grouptable`)."""
    from astra_cli.cli.grouptable import print_group_table
    from astra_cli.cli.progress import describe_plan

    console = stdout_console()
    console.print(f"{heading} {describe_plan(plan)}".strip(), markup=False)
    details = plan_as_dict(plan)["groups"]
    for group in details:
        group["n_chunks"] = len(group["chunks"])
    counts = {"requested": "requested", "done": "already_done", "to run": "to_run"}
    print_group_table(console, details, {**counts, "chunks": "n_chunks"})
    for group in details:
        for note in group["notes"]:
            console.print(f"group {group['key']}: {note}", markup=False)
    if plan.skipped_failed:
        stderr_console().print(
            f"{plan.skipped_failed} run(s) failed before and will not be retried "
            "(use --retry-failed)"
        )


class PlanGroup(MethodGroup):
    def build(self, method_class: type[Method]) -> ClickCommand:
        return build_method_command(
            method_class,
            plan_action,
            PLAN_OPTIONS,
            help_text=(
                f"Show how {method_class.name} runs would be grouped and chunked; run nothing.\n\n"
                f"{method_class.summary()}"
            ),
            epilog=plan_examples(method_class),
        )
