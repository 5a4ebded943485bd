"""`astra analyse METHOD ...`: plan, run every group with its model loaded once, store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from astra_cli.cli.clickparts import ClickCommand
from astra_cli.cli.console import notice, print_json, stderr_console
from astra_cli.cli.errors import reported_errors
from astra_cli.cli.examples import analyse_examples
from astra_cli.cli.inputs import prepare_invocation
from astra_cli.cli.invocation import Invocation
from astra_cli.cli.method_commands import MethodGroup, build_method_command, method_description
from astra_cli.cli.options import ANALYSE_OPTIONS
from astra_cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from astra_cli.engine.backends import Backend
    from astra_cli.engine.progress import Progress
    from astra_cli.methods.base import Method
    from astra_cli.vocabulary import Summary


def analyse_action(method_class: type[Method], invocation: Invocation) -> None:
    from astra_cli.engine.backends import Backend, runs_chunks_here
    from astra_cli.engine.runner import execute_plan
    from astra_cli.engine.slurm import SlurmOptions
    from astra_cli.engine.warmstart import start_helpers
    from astra_cli.engine.worker import keep_freed_heap

    running, report = invocation.running, invocation.report
    with reported_errors(report.verbose, json_document=report.json):
        slurm = SlurmOptions(
            partition=running.slurm_partition,
            jobs=running.slurm_jobs,
            cores=running.slurm_cores,
            memory=running.slurm_memory,
            walltime=running.slurm_walltime,
            account=running.slurm_account,
            extra=tuple(running.slurm_extra),
        )
        # Before planning: a SLURM request no node can run is refused before anything is done.
        backend = Backend.chosen(
            running.backend,
            invocation.planning.jobs,
            running.scheduler,
            running.scheduler_file,
            running.dask_timeout,
            slurm,
        )
        warn_of_oversubscription(backend)
        if running.log_file is not None:
            check_log_file(running.log_file, invocation.planning.output_dir)
        start_helpers(backend, invocation.planning.output_dir)  # while the request is planned
        if runs_chunks_here(backend):
            keep_freed_heap()  # as a worker process does: this process is astra's own
        plan = prepare_invocation(method_class, invocation, backend=backend)
        summary = execute_plan(
            plan,
            backend=backend,
            progress=progress_for(report.quiet, running.log_file),
            wait=running.wait,
        )
        if report.json:
            print_json(summary.to_dict())
        for stage in [*summary.upstream, summary]:
            if not report.quiet:
                render_summary(stage, final=stage is summary)
            elif stage.exit_code != ExitCode.OK:
                # Quiet, for cron, is "speak only when something needs you": then say what.
                from astra_cli.cli.progress import describe_summary

                stderr_console().print(describe_summary(stage), markup=False, highlight=False)
                render_failures(stage)
    raise typer.Exit(summary.exit_code)


def check_log_file(path: Path, output_dir: Path) -> None:
    """Refuse a --log-file that cannot be appended to before any work, not after it. One in
    the output directory is fine on the first night too: astra creates that directory."""
    from astra_cli.errors import UsageError

    if path.parent.resolve() == output_dir.resolve():
        output_dir.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as failure:
        raise UsageError(f"--log-file {path}: {failure.strerror or failure}") from None


def warn_of_oversubscription(backend: Backend) -> None:
    """More workers on this machine than it has cores only compete for them (each holding
    its own copy of what is not memory-mapped): allowed, but said."""
    from astra_cli.engine.backends import default_jobs

    processes = backend.name == "loky" or (
        backend.name == "dask" and not (backend.scheduler or backend.scheduler_file)
    )
    cores = default_jobs()
    if (processes or backend.name == "threading") and backend.jobs > cores:
        memory = ", each with its own memory" if processes else ""
        notice(
            f"--jobs {backend.jobs} is more than the {cores} core(s) of this machine: workers "
            f"will compete for them{memory}",
            label="warning",
        )


def progress_for(quiet: bool, log_file: Path | None = None) -> Progress:
    """A bar on a terminal, plain lines in a log, nothing when quiet; and the --log-file."""
    from astra_cli.cli.progress import LineProgress, LogFile, RichProgress
    from astra_cli.engine.progress import FanOut, SilentProgress

    if quiet:
        terminal: Progress = SilentProgress()
    elif sys.stderr.isatty():
        terminal = RichProgress(stderr_console())
    else:
        terminal = LineProgress()
    return FanOut(terminal, LogFile(str(log_file))) if log_file else terminal


def render_summary(summary: Summary, *, final: bool = True) -> None:
    """The summary line, failures and hints; `final` adds where the results are."""
    from astra_cli.cli.progress import describe_slurm_jobs, describe_summary

    console = stderr_console()
    console.print(describe_summary(summary), markup=False, highlight=False)
    if summary.slurm_jobs:
        console.print(describe_slurm_jobs(summary), markup=False, highlight=False)
    render_failures(summary)
    hints = []
    if summary.skipped_failed:
        hints.append(
            f"{summary.skipped_failed} run(s) failed in an earlier invocation and were not "
            "retried: use --retry-failed"
        )
    if summary.bad_rows:
        hints.append(f"{summary.bad_rows} bad manifest row(s) were skipped (see above)")
    if summary.locked:
        hints.append(
            f"{summary.locked} run(s) are being run by another invocation "
            f"({'; '.join(summary.locked_groups)}): run again later, or use --wait"
        )
    if summary.interrupted:
        hints.append(
            f"interrupted: {summary.pending} run(s) not done; run the same command again to "
            "finish them"
        )
    for hint in hints:
        console.print(hint, markup=False, highlight=False)
    if final:
        console.print(f"results: {summary.output_dir}", markup=False)


def render_failures(summary: Summary) -> None:
    console = stderr_console()
    for failure in summary.failures:
        console.print(f"  failed: {failure['observation']}: {failure['error']}", markup=False)
    if summary.failed > len(summary.failures):
        console.print(f"  ... and {summary.failed - len(summary.failures)} more failed run(s)")


class AnalyseGroup(MethodGroup):
    def build(self, method_class: type[Method]) -> ClickCommand:
        return build_method_command(
            method_class,
            analyse_action,
            ANALYSE_OPTIONS,
            help_text=(
                f"Analyse observations with {method_class.name}.\n\n"
                f"{method_description(method_class)}"
            ),
            short_help=method_class.summary(),
            epilog=analyse_examples(method_class),
        )
