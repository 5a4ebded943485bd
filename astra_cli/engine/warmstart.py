"""Worker processes started, and the first group's model loaded in each, while the invoking
process still checks the request.

Before the first spectrum is read, an invocation pays for three things in turn: its own checks
of the request (`Method.validate` reads a grid through, unless the store remembers a pass),
starting loky's workers (an interpreter and the method's imports each) and loading the model in
every worker. The last two need nothing of the first, so once the plan says there is work,
`begin` starts the workers of its first stage and has each load that stage's first model, and
the checks run meanwhile. `execute_plan` then runs the chunks on the same workers: joblib keeps
one loky executor per process and hands it to a later call with the same settings
(`backends.joblib_settings`) and number of workers, so the chunks find the model cached and
the runner counts the loads made here (`finish`). When the checks refuse the request, the
loads are waited for all the same (`finish`): stopping loky's workers in the middle of a task
races its executor, which then prints a traceback of its own; and a model the checks refuse
is seldom one that takes long to load.

Only for loky: a dask cluster is started when the chunks need it (SLURM jobs wait in a queue
anyway), and the threading and sequential backends have no process to start.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from astra_cli.engine.backends import Backend, joblib_settings, worker_death_errors, workers_for

if TYPE_CHECKING:
    from astra_cli.engine.planner import Plan


@dataclass
class WarmStart:
    """Workers started for a stage of a plan, loading its first group's model."""

    _loads: Iterator[bool]
    _backend: Backend

    @classmethod
    def begin(cls, plan: Plan, backend: Backend) -> WarmStart | None:
        """Start the workers of the plan's first stage with work, each loading the model of its
        first group; None when nothing would gain (no work, no worker process to start)."""
        stage = first_stage(plan)
        if stage is None or backend.name != "loky":
            return None
        workers = workers_for(backend, len(stage.chunks))
        if workers < 2:  # joblib runs a lone worker in this process
            return None
        from joblib import Parallel, delayed, parallel_config

        from astra_cli.engine.worker import prime

        group = stage.group(stage.chunks[0].group_key)
        with joblib_settings(backend, workers) as settings, parallel_config(**settings.config):
            parallel = Parallel(return_as="generator_unordered", batch_size=1)
            loads = parallel(
                delayed(prime)(group.method, group.options, group.key, group.model.files_state)
                for _ in range(workers)
            )
        return cls(loads, backend)

    def finish(self) -> int:
        """Wait for the workers to have loaded the model; how many loaded it. A worker that
        died meanwhile is the chunks' to meet: the pool starts another and recovers."""
        try:
            return sum(self._loads)
        except worker_death_errors(self._backend):
            return 0


def first_stage(plan: Plan) -> Plan | None:
    """The stage that runs first and has chunks: the methods it needs first, depth first, as
    `execute_plan` runs them, then the plan itself."""
    for stage in plan.upstream:
        found = first_stage(stage)
        if found is not None:
            return found
    return plan if plan.chunks else None
