"""From what the user typed to a plan: the inputs `analyse`, `plan` and `status` share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from astra_cli.cli.console import notice, stderr_console
from astra_cli.cli.invocation import Invocation

if TYPE_CHECKING:
    from astra_cli.api import Inputs
    from astra_cli.engine.backends import Backend
    from astra_cli.engine.planner import Plan
    from astra_cli.methods.base import Method


def collect_invocation_inputs(method_class: type[Method], invocation: Invocation) -> Inputs:
    """Every observation the command line names, manifests included; what was left out of the
    manifests is said on stderr."""
    from astra_cli import api
    from astra_cli.io.manifest import describe_problems

    given = invocation.inputs
    inputs = api.collect_inputs(
        method_class,
        given.paths,
        given.obs,
        given.per_key,
        given.from_file,
        data_root=given.data_root,
        kind=given.kind,
        file_format=given.manifest_format,
        hdu=given.hdu_index,
        skip_bad_rows=given.skip_bad_rows,
    )
    manifests = inputs.manifests
    if not invocation.report.quiet:
        for line in manifests.notices:
            notice(line)
    if manifests.problems:
        notice(f"{len(manifests.problems)} bad row(s) in --from-file left out:", "warning")
        for line in describe_problems(manifests.problems):
            stderr_console().print(line, markup=False, highlight=False)
    return inputs


def prepare_invocation(
    method_class: type[Method],
    invocation: Invocation,
    *,
    jobs: int | None = None,
    backend: Backend | None = None,
) -> Plan:
    """Observations and option values from the command line -> a plan against the store.

    jobs
        The workers the plan is chunked for (every core when None), unless a backend is given.
    backend
        The backend the plan will run on (`analyse`): its workers start while the request is
        checked.
    """
    from astra_cli import api

    planning = invocation.planning
    inputs = collect_invocation_inputs(method_class, invocation)
    return api.prepare(
        method_class,
        inputs.observations,
        invocation.method_options,
        manifests=inputs.manifests,
        output_dir=planning.output_dir,
        jobs=jobs,
        backend=backend,
        chunk_size=planning.chunk_size,
        force=planning.force,
        retry_failed=planning.retry_failed,
        checksum=planning.checksum,
    )
